"""Coarse-to-fine vs dense decoding (issue #5): MLP evaluations, wall time and the Dice between
the two outputs, over held-out synthetic shapes of both families.

Per shape: FPS patches (N = 8, K = 11), T = 100 latent fit with the bundled prior, then the same
latent decoded densely (every voxel of the prior's frame) and coarse-to-fine with each variant
(`stride` voxels per block along the finest axis, `decoding.block_strides`). Writes cases.csv and
table.md here; with `--spacing a,b,c` (mm) each shape is first resampled to that spacing (linear
interpolation of 0/1, threshold 0.5, the physical box kept), a variant with the 4 x 4 x 4 voxel
blocks of before the per-axis strides is added, and the files are cases_AxBxC.csv and table_AxBxC.md.

    python results/decode/compare.py --count 20 --threads 1
    python results/decode/compare.py --count 20 --threads 1 --spacing 0.7,0.7,5
"""
import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.baselines import fps_centres  # noqa: E402
from PatchSamplerLib.method.decoding import decode_grid, decode_grid_coarse_to_fine  # noqa: E402
from PatchSamplerLib.method.frame import frame_box  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior, fit_latent  # noqa: E402
from PatchSamplerLib.method.metrics import dice  # noqa: E402
from PatchSamplerLib.method.patches import extract_patches  # noqa: E402
from PatchSamplerLib.volume import BinaryVolume, bbox_centre_mm, index_to_world, to_sitk_image  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = {"c2f s4 m2 grow1": dict(stride=4, margin=2.0, grow=1),
            "c2f s4 m2 grow0": dict(stride=4, margin=2.0, grow=0),
            "c2f s4 m4 grow0": dict(stride=4, margin=4.0, grow=0),
            "c2f s8 m4 grow0": dict(stride=8, margin=4.0, grow=0)}
BEFORE = {"c2f 4x4x4 voxels m4 grow0 (before)": dict(stride=(4, 4, 4), margin=4.0, grow=0)}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def resampled(vol: BinaryVolume, spacing) -> BinaryVolume:
    """`vol` on a grid of `spacing` (3,) mm over the same physical box (the corner of voxel 0
    stays where it was), linear interpolation of the 0/1 mask, threshold 0.5."""
    import SimpleITK as sitk
    spacing = np.asarray(spacing, float)
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(vol.shape, vol.spacing, spacing)]
    origin = index_to_world(spacing / np.asarray(vol.spacing) / 2 - 0.5, vol)
    image = sitk.Resample(to_sitk_image(vol.mask, vol, np.float32), size, sitk.Transform(), sitk.sitkLinear,
                          tuple(origin), tuple(spacing), tuple(vol.direction.reshape(-1)), 0.0, sitk.sitkFloat32)
    return BinaryVolume(sitk.GetArrayFromImage(image).transpose(2, 1, 0) >= 0.5, spacing, origin, vol.direction)


def one_shape(family: str, index: int, prior: ShapePrior, spacing=None, variants=VARIANTS) -> list[dict]:
    vol = make_shape(family, 1, index)
    vol = vol if spacing is None else resampled(vol, spacing)
    centre = bbox_centre_mm(vol.mask, vol.spacing)
    _, labels, coords = extract_patches(vol.mask, vol.spacing, fps_centres(vol.mask, 8, 0, vol.spacing), 11, centre)
    z = fit_latent(prior.decoder, coords.reshape(1, -1, 3), labels.reshape(1, -1), 100)
    lo, hi = frame_box(centre, prior.extent_mm, vol.spacing, vol.shape)
    box = tuple(int(v) for v in hi - lo + 1)
    dense, dense_s = timed(lambda: decode_grid(prior.decoder, z, box, vol.spacing, centre, offset=lo) >= 0.5)
    rows = [dict(family=family, case=index, variant="dense", evaluations=int(np.prod(box)), seconds=dense_s,
                 dice_vs_dense=1.0, differing=0)]
    for name, options in variants.items():
        (prob, count), seconds = timed(lambda: decode_grid_coarse_to_fine(prior.decoder, z, box, vol.spacing, centre,
                                                                          offset=lo, **options))
        rows.append(dict(family=family, case=index, variant=name, evaluations=count, seconds=seconds,
                         dice_vs_dense=dice((prob >= 0.5).numpy(), dense.numpy()),
                         differing=int(((prob >= 0.5) != dense).sum())))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| family | variant | shapes | evaluations (mean) | fewer than dense | seconds (mean) | faster than dense "
             "| Dice vs dense (min) | voxels differing from dense (max) |", "|---|---|---|---|---|---|---|---|---|"]
    for family in ("vertebra", "kidney"):
        dense = [r for r in rows if r["family"] == family and r["variant"] == "dense"]
        for variant in dict.fromkeys(r["variant"] for r in rows if r["family"] == family):
            mine = [r for r in rows if r["family"] == family and r["variant"] == variant]
            ev = np.mean([float(r["evaluations"]) for r in mine])
            sec = np.mean([float(r["seconds"]) for r in mine])
            ratio_ev = np.mean([float(d["evaluations"]) / float(r["evaluations"]) for d, r in zip(dense, mine)])
            ratio_s = np.mean([float(d["seconds"]) / float(r["seconds"]) for d, r in zip(dense, mine)])
            lines.append(f"| {family} | {variant} | {len(mine)} | {ev:,.0f} | {ratio_ev:.1f}x | {sec:.2f} | "
                         f"{ratio_s:.1f}x | {min(float(r['dice_vs_dense']) for r in mine):.5f} | "
                         f"{max(int(r['differing']) for r in mine)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spacing", help="a,b,c mm: resample each shape to this spacing first (default: 1 mm, "
                                          "as generated)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spacing = None if args.spacing is None else tuple(float(v) for v in args.spacing.split(","))
    tag = "" if spacing is None else "_" + "x".join(f"{v:g}" for v in spacing)
    rows = []
    for family in ("vertebra", "kidney"):
        prior = ShapePrior.load(family)
        for index in range(args.count):
            rows += one_shape(family, index, prior, spacing, VARIANTS if spacing is None else {**VARIANTS, **BEFORE})
            print(family, index, flush=True)
    with open(HERE / f"cases{tag}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = f"python results/decode/compare.py --count {args.count} --threads {args.threads}" + (
        "" if spacing is None else f" --spacing {args.spacing}")
    text = table(rows)
    (HERE / f"table{tag}.md").write_text(f"Command: `{command}` (per shape: FPS 8 x 11, T = 100, bundled prior"
                                         f"{'' if spacing is None else ', shape resampled to ' + tag[1:] + ' mm'})"
                                         "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
