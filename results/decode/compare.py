"""Coarse-to-fine vs dense decoding (issue #5): MLP evaluations, wall time and the Dice between
the two outputs, over held-out synthetic shapes of both families.

Per shape: FPS patches (N = 8, K = 11), T = 100 latent fit with the bundled prior, then the same
latent decoded densely (every voxel of the prior's frame) and coarse-to-fine with each variant.
Writes cases.csv and table.md here.

    python results/decode/compare.py --count 20 --threads 1
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
from PatchSamplerLib.volume import bbox_centre_mm  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = {"c2f s4 m2 grow1": dict(stride=4, margin=2.0, grow=1),
            "c2f s4 m2 grow0": dict(stride=4, margin=2.0, grow=0),
            "c2f s4 m4 grow0": dict(stride=4, margin=4.0, grow=0),
            "c2f s8 m4 grow0": dict(stride=8, margin=4.0, grow=0)}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def one_shape(family: str, index: int, prior: ShapePrior) -> list[dict]:
    vol = make_shape(family, 1, index)
    centre = bbox_centre_mm(vol.mask, vol.spacing)
    _, labels, coords = extract_patches(vol.mask, vol.spacing, fps_centres(vol.mask, 8, 0, vol.spacing), 11, centre)
    z = fit_latent(prior.decoder, coords.reshape(1, -1, 3), labels.reshape(1, -1), 100)
    lo, hi = frame_box(centre, prior.extent_mm, vol.spacing, vol.shape)
    box = tuple(int(v) for v in hi - lo + 1)
    dense, dense_s = timed(lambda: decode_grid(prior.decoder, z, box, vol.spacing, centre, offset=lo) >= 0.5)
    rows = [dict(family=family, case=index, variant="dense", evaluations=int(np.prod(box)), seconds=dense_s,
                 dice_vs_dense=1.0)]
    for name, options in VARIANTS.items():
        (prob, count), seconds = timed(lambda: decode_grid_coarse_to_fine(prior.decoder, z, box, vol.spacing, centre,
                                                                          offset=lo, **options))
        rows.append(dict(family=family, case=index, variant=name, evaluations=count, seconds=seconds,
                         dice_vs_dense=dice((prob >= 0.5).numpy(), dense.numpy())))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| family | variant | shapes | evaluations (mean) | fewer than dense | seconds (mean) | faster than dense "
             "| Dice vs dense (min) |", "|---|---|---|---|---|---|---|---|"]
    for family in ("vertebra", "kidney"):
        dense = [r for r in rows if r["family"] == family and r["variant"] == "dense"]
        if not dense:
            continue
        for variant in ["dense"] + list(VARIANTS):
            mine = [r for r in rows if r["family"] == family and r["variant"] == variant]
            ev = np.mean([float(r["evaluations"]) for r in mine])
            sec = np.mean([float(r["seconds"]) for r in mine])
            ratio_ev = np.mean([float(d["evaluations"]) / float(r["evaluations"]) for d, r in zip(dense, mine)])
            ratio_s = np.mean([float(d["seconds"]) / float(r["seconds"]) for d, r in zip(dense, mine)])
            lines.append(f"| {family} | {variant} | {len(mine)} | {ev:,.0f} | {ratio_ev:.1f}x | {sec:.2f} | "
                         f"{ratio_s:.1f}x | {min(float(r['dice_vs_dense']) for r in mine):.5f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for family in ("vertebra", "kidney"):
        prior = ShapePrior.load(family)
        for index in range(args.count):
            rows += one_shape(family, index, prior)
            print(family, index, flush=True)
    with open(HERE / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows)
    (HERE / "table.md").write_text(f"Command: `python results/decode/compare.py --count {args.count} --threads "
                                   f"{args.threads}` (per shape: FPS 8 x 11, T = 100, bundled prior)\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
