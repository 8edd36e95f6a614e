"""The five files of a `run`, written together: they appear only when the whole run succeeded.

reconstruction.nii.gz (input geometry, 0/1), errors.nii.gz (0 background, 1 intersection,
2 extra, 3 missing), patches.json, metrics.json, overview.png.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .figures import overview_figure
from .patches import patch_boxes
from .pipeline import ReconstructionResult
from .volume import BinaryVolume, index_to_world, write_labelmap

OUTPUT_FILES = ("reconstruction.nii.gz", "errors.nii.gz", "patches.json", "metrics.json", "overview.png")


def _json_number(x):
    """NaN / inf are not JSON: write them as null / "inf"."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def patches_record(result: ReconstructionResult, volume: BinaryVolume) -> dict:
    """patches.json content: settings and, per patch, its centre (index and world mm) and box."""
    k = result.settings["k"]
    world = index_to_world(result.centres, volume)
    boxes = patch_boxes(result.centres, k)
    patches = [{"patch": i + 1, "centre_index_ijk": [round(float(v), 4) for v in c],
                "centre_world_lps_mm": [round(float(v), 4) for v in w],
                "box_index_ijk": {"lower": b[0].tolist(), "upper": b[1].tolist()},
                "foreground_voxels": int(result.patch_values[i].sum())}
               for i, (c, w, b) in enumerate(zip(result.centres, world, boxes))]
    if result.generated is not None:      # learned sampler: its points before and after projection
        for patch, gen in zip(patches, result.generated):
            patch["generated_index_ijk"] = [round(float(v), 4) for v in gen]
            patch["projected_index_ijk"] = patch["centre_index_ijk"]
    keys = ("n", "k", "t", "sampler", "seed", "prior", "fit_lr")
    return {**{key: result.settings[key] for key in keys},
            "coordinates": "voxel index (i, j, k) of the input image; world = ITK/NIfTI LPS millimetres",
            "patches": patches}


def metrics_record(result: ReconstructionResult) -> dict:
    return {**{k: _json_number(float(v)) for k, v in result.metrics.items()},
            "seconds": {k: round(v, 4) for k, v in result.timings.items()},
            "device": result.settings["device"], "warnings": result.warnings,
            "frame": {k: result.settings[k] for k in ("frame_centre_mm", "frame_extent_mm", "decoded_box_index",
                                                      "decode", "decoder_points")}}


def _write_all(folder: Path, result: ReconstructionResult, volume: BinaryVolume, title: str) -> None:
    write_labelmap(folder / "reconstruction.nii.gz", result.reconstruction.astype(np.uint8), volume)
    write_labelmap(folder / "errors.nii.gz", result.errors, volume)
    (folder / "patches.json").write_text(json.dumps(patches_record(result, volume), indent=2))
    (folder / "metrics.json").write_text(json.dumps(metrics_record(result), indent=2))
    overview_figure(result.errors, volume.spacing, result.centres, result.settings["k"], title,
                    folder / "overview.png")


def write_run_outputs(result: ReconstructionResult, volume: BinaryVolume, out_dir, title: str = "") -> Path:
    """Write the five outputs into a temporary sibling folder, then move them into `out_dir`
    (created if needed; other files there are left alone). Nothing is left behind on failure."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_all(tmp, result, volume, title)
        out.mkdir(exist_ok=True)
        for name in OUTPUT_FILES:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
