"""Figure of the kidney family beside the real sample kidneys: per row one kidney (the real
samples, then synthetic left / right), mid-slices through the renal sinus and a coronal sum
projection.

    python results/anatomy/kidney_figure.py results/anatomy/kidney_family.png
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from PatchSamplerLib.data.anatomy.kidney import SIDES, kidney_shape_with_params, sinus_cavity  # noqa: E402

_VIEWS = (("axial", 2, (0, 1)), ("coronal", 1, (0, 2)), ("sagittal", 0, (1, 2)))


def _figure_cases(sample_dir: str, seeds) -> list:
    """(title, BinaryVolume on LPS axes) for the real sample kidneys and synthetic ones."""
    from PatchSamplerLib.orientation import to_anatomical
    from PatchSamplerLib.volume import read_labelmap
    cases = [(f"real {side}: TotalSegmentator example, 3 mm -> 1.5 mm (cut off below)",
              to_anatomical(read_labelmap(f"{sample_dir}/kidney_{side}_1.5mm.nii.gz"))[0]) for side in SIDES]
    for seed, render_mm in zip(seeds, (None, 3.0, None, 3.0)):
        for side in SIDES:
            volume, p = kidney_shape_with_params(np.random.default_rng(seed), side, render_mm=render_mm)
            how = "partial volume 1.5 mm" if render_mm is None else "3 mm -> 1.5 mm"
            cases.append((f"synthetic {side}, seed {seed}, {how}: length {p.length_mm:.0f}, width {p.width_mm:.0f}, "
                          f"thickness {p.thickness_mm:.0f}, parenchyma {p.parenchyma_mm:.0f} mm", volume))
    return cases


def save_family_figure(path: str, sample_dir: str = "Resources/SampleData", seeds=(0, 1), window_mm: float = 150.0):
    """PNG: per row one kidney (the real samples, then synthetic left / right), mid-slices through
    the sinus cavity's centroid (axial, coronal, sagittal) and a coronal sum projection; all
    panels on one mm scale (`window_mm` square), LPS axes (x +L right, y +P / z +S up)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = _figure_cases(sample_dir, seeds)
    fig, axes = plt.subplots(len(cases), 4, figsize=(11, 2.8 * len(cases)))
    for row, (title, volume) in zip(axes, cases):
        sp = volume.spacing[0]
        centre = np.round(np.argwhere(sinus_cavity(volume)["cavity"]).mean(axis=0)).astype(int)
        mid = np.argwhere(volume.mask).mean(axis=0) * sp
        images = [(np.take(volume.mask, centre[k], axis=k), pair, f"{name} slice through the sinus")
                  for name, k, pair in _VIEWS] + [(volume.mask.sum(axis=1), (0, 2), "coronal projection")]
        for ax, (image, (i, j), label) in zip(row, images):
            ax.imshow(image.T, origin="lower", cmap="gray", interpolation="nearest",
                      extent=(0, volume.shape[i] * sp, 0, volume.shape[j] * sp))
            ax.set_xlim(mid[i] - window_mm / 2, mid[i] + window_mm / 2)
            ax.set_ylim(mid[j] - window_mm / 2, mid[j] + window_mm / 2)
            ax.set_facecolor("black")
            ax.set_title(f"{label} ({'xyz'[i]} right, {'xyz'[j]} up)", fontsize=7)
            ax.tick_params(labelsize=6)
        row[0].set_title(f"{title}\n{row[0].get_title()}", fontsize=7, loc="left")
        row[0].set_title("")
    fig.suptitle("Kidney family " + KIDNEY_FAMILY_VERSION + " beside real TotalSegmentator kidneys "
                 "(LPS: x = patient left, y = posterior, z = superior; mm)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    save_family_figure(sys.argv[1] if len(sys.argv) > 1 else "results/anatomy/kidney_family.png")
