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

from PatchSamplerLib.method.patches import patch_boxes
from PatchSamplerLib.pipeline import ReconstructionResult
from PatchSamplerLib.reporting.names import RUN_FILES, SPARSE_FILES
from PatchSamplerLib.reporting.overview import overview_picture, sparse_overview_picture
from PatchSamplerLib.sparse.inputs import SparseInput
from PatchSamplerLib.sparse.reconstruction import SparseResult
from PatchSamplerLib.volume import BinaryVolume, index_to_world, write_labelmap

OUTPUT_FILES = RUN_FILES


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
    keys = ("n", "k", "t", "sampler", "sampler_model", "seed", "prior", "fit_lr", "largest_component")
    return {**{key: result.settings[key] for key in keys}, **fit_record(result),
            "coordinates": "voxel index (i, j, k) of the input image; world = ITK/NIfTI LPS millimetres",
            "anatomical_frame": result.settings["anatomical_frame"], "side": result.settings.get("side"),
            "patches": patches}


def fit_record(result: ReconstructionResult) -> dict:
    """Which latent fit the run used: "fast" or "adam" (`method.fitting`) and the patch voxels per
    step (None: all)."""
    return {"fit": result.settings.get("fit"), "fit_points_per_step": result.settings.get("fit_points_per_step")}


def metrics_record(result: ReconstructionResult) -> dict:
    return {**{k: _json_number(float(v)) for k, v in result.metrics.items()},
            "seconds": {k: round(v, 4) for k, v in result.timings.items()},
            "device": result.settings["device"], "warnings": result.warnings,
            "sampler": result.settings["sampler"], "sampler_model": result.settings.get("sampler_model"),
            **fit_record(result),
            "frame": {**{k: result.settings[k] for k in ("frame_centre_mm", "frame_extent_mm", "decoded_box_index",
                                                         "decode", "decoder_points", "anatomical_frame")},
                      "side": result.settings.get("side")}}


def _run_writers(result: ReconstructionResult, volume: BinaryVolume, title: str) -> dict:
    """File name -> function(path) writing it, for the five outputs of a run (RUN_FILES)."""
    writers = {
        "reconstruction.nii.gz": lambda p: write_labelmap(p, result.reconstruction.astype(np.uint8), volume),
        "errors.nii.gz": lambda p: write_labelmap(p, result.errors, volume),
        "patches.json": lambda p: p.write_text(json.dumps(patches_record(result, volume), indent=2)),
        "metrics.json": lambda p: p.write_text(json.dumps(metrics_record(result), indent=2)),
        "overview.png": lambda p: overview_picture(result.errors, volume.spacing, result.centres,
                                                  result.settings["k"], title, p),
    }
    assert tuple(writers) == RUN_FILES
    return writers


def write_atomically(out_dir, writers: dict) -> Path:
    """Run each `writers[name](path)` into a temporary sibling folder, then move the files into
    `out_dir` (created if needed; other files there are left alone). Nothing is left behind on
    failure."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, write in writers.items():
            write(tmp / name)
        out.mkdir(exist_ok=True)
        for name in writers:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_run_outputs(result: ReconstructionResult, volume: BinaryVolume, out_dir, title: str = "") -> Path:
    """The five outputs of a run (OUTPUT_FILES), written together by `write_atomically`."""
    return write_atomically(out_dir, _run_writers(result, volume, title))


def sparse_input_codes(sparse: SparseInput) -> np.ndarray:
    """(X, Y, Z) uint8: 0 unknown, 1 known background, 2 known foreground."""
    return sparse.known.astype(np.uint8) + sparse.labels.astype(np.uint8)


def sparse_metrics_record(result: SparseResult) -> dict:
    return {**{k: _json_number(float(v)) for k, v in result.metrics.items()},
            "seconds": {k: round(v, 4) for k, v in result.timings.items()},
            "settings": result.settings, "fit_history": [list(h) for h in result.fit_history],
            "warnings": result.warnings}


def write_sparse_outputs(result: SparseResult, sparse: SparseInput, volume: BinaryVolume, out_dir,
                         title: str = "") -> Path:
    """reconstruction.nii.gz, sparse_input.nii.gz (0 unknown, 1 known background, 2 known
    foreground), errors.nii.gz (only with a reference), metrics.json, overview.png."""
    shown = result.errors if result.errors is not None else result.reconstruction.astype(np.uint8)
    writers = {
        "reconstruction.nii.gz": lambda p: write_labelmap(p, result.reconstruction.astype(np.uint8), volume),
        "sparse_input.nii.gz": lambda p: write_labelmap(p, sparse_input_codes(sparse), volume),
        "metrics.json": lambda p: p.write_text(json.dumps(sparse_metrics_record(result), indent=2)),
        "overview.png": lambda p: sparse_overview_picture(shown, sparse.known, volume.spacing, title, p),
    }
    if result.errors is not None:
        writers["errors.nii.gz"] = lambda p: write_labelmap(p, result.errors, volume)
    assert set(writers) <= set(SPARSE_FILES)
    return write_atomically(out_dir, writers)
