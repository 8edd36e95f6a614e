"""The mean shape of each prior beside a real shape of its organ (issue 17, item 7): central axial,
coronal and sagittal slices of the real segmentation (resampled to the prior's spacing, in the
anatomical frame, centred on its bounding box) and of each prior's mean shape (`mean-shape`:
the mean training latent, or the zero latent for priors that did not record one).

    python results/real/mean_shapes.py --out results/real/mean_shapes.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.orientation import to_anatomical  # noqa: E402
from PatchSamplerLib.sparse.ceiling import mean_shape  # noqa: E402
from PatchSamplerLib.volume import foreground_bbox, read_labelmap, resample_isotropic  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ROWS = {  # organ: (real file, priors)
    "kidney": (DATA / "totalsegmentator-example/kidney_left.nii.gz", ("kidney", "kidney-anatomical")),
    "vertebra": (DATA / "totalsegmentator-t12/vertebrae_T12.nii.gz", ("vertebra", "vertebra-anatomical")),
}
WINDOW_MM = 150.0
VIEWS = (("axial", 2), ("coronal", 1), ("sagittal", 0))


def central_slices(mask: np.ndarray, spacing_mm: float) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices through the bounding-box centre, padded / cropped to a
    WINDOW_MM square around it (axes: LPS frame, superior up)."""
    lo, hi = foreground_bbox(mask)
    centre = (lo + hi) // 2
    half = int(WINDOW_MM / spacing_mm / 2)
    padded = np.pad(mask, half)
    c = centre + half
    cube = padded[c[0] - half:c[0] + half, c[1] - half:c[1] + half, c[2] - half:c[2] + half]
    return [np.take(cube, half, axis=axis) for _, axis in VIEWS]


def panels(organ: str) -> list[tuple[str, list[np.ndarray]]]:
    path, priors = ROWS[organ]
    out = []
    for name in priors:
        prior_path = ROOT / "Resources/Models" / f"prior_{name}.pt"
        if not prior_path.exists():
            continue
        prior = ShapePrior.load(str(prior_path), device="cpu")
        volume, what = mean_shape(prior, prior.spacing_mm[0])
        if not out:
            real = to_anatomical(resample_isotropic(read_labelmap(str(path)), prior.spacing_mm[0]))[0]
            out.append((f"real {path.stem.replace('.nii', '')}", central_slices(real.mask, prior.spacing_mm[0])))
        label = "mean training latent" if "mean training" in what else "zero latent"
        out.append((f"prior {name} ({label})", central_slices(volume.mask, prior.spacing_mm[0])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/real/mean_shapes.png")
    args = parser.parse_args()
    rows = [row for organ in ROWS for row in panels(organ)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)))
    for r, (title, slices) in enumerate(rows):
        for c, ((view, _), image) in enumerate(zip(VIEWS, slices)):
            ax = axes[r, c]
            ax.imshow(image.T, origin="lower", cmap="gray", interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(view)
        axes[r, 0].set_ylabel(title, fontsize=7)
    fig.suptitle(f"Real shapes and prior mean shapes (central slices, {WINDOW_MM:.0f} mm windows, LPS frame)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
