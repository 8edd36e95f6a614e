"""The metrics table of a segment: one row per sampler with Dice, ASD, HD95 and seconds per stage.

A run replaces the rows of the samplers it ran and keeps the others; rows stay in the
registry's sampler order (Learned, FPS, Random). Sampler labels come from
`PatchSamplerLib.method.samplers`, imported when a row is made (the library may not be
importable when this file loads).
"""
from __future__ import annotations

import math

import vtk

import slicer

from PatchSamplerMRML.outputs import find_outputs, tag_output

TABLE_COLUMNS = (("Segment", str), ("Sampler", str), ("N", int), ("K", int), ("T", int), ("Seed", int),
                 ("Dice", float), ("ASD (mm)", float), ("HD95 (mm)", float),
                 ("Sampling (s)", float), ("Extraction (s)", float), ("Latent fit (s)", float),
                 ("Decode (s)", float), ("Metrics (s)", float), ("Total (s)", float),
                 ("Device", str), ("Prior", str), ("Note", str))
TIMING_COLUMNS = {"Sampling (s)": "sampling", "Extraction (s)": "extraction", "Latent fit (s)": "latent_fit",
                  "Decode (s)": "decode", "Metrics (s)": "metrics", "Total (s)": "total"}


def metrics_row(segment_name: str, config, result=None, note: str = "") -> dict:
    """One table row (column -> value) of the run of `config` (the library's RunConfig: sampler,
    n, k, t, seed): metrics and seconds per stage of its ReconstructionResult, or NaN and a note
    for a sampler that did not run."""
    from PatchSamplerLib.method.samplers import sampler_label
    row = {"Segment": segment_name, "Sampler": sampler_label(config.sampler), "N": config.n, "K": config.k,
           "T": config.t, "Seed": config.seed, "Device": "", "Prior": "", "Note": note}
    metrics = result.metrics if result is not None else {}
    row.update({"Dice": metrics.get("dice", math.nan), "ASD (mm)": metrics.get("asd_mm", math.nan),
                "HD95 (mm)": metrics.get("hd95_mm", math.nan)})
    for column, stage in TIMING_COLUMNS.items():
        row[column] = result.timings.get(stage, math.nan) if result is not None else math.nan
    if result is not None:
        row["Device"], row["Prior"] = result.settings["device"], str(result.settings["prior"])
        row["Note"] = "; ".join(result.warnings)
    return row


def table_rows(table_node) -> list[dict]:
    """The rows of a metrics table node as dicts (column -> value)."""
    table = table_node.GetTable()
    names = [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    return [{name: table.GetValue(r, c).ToString() if isinstance(table.GetColumn(c), vtk.vtkStringArray)
             else table.GetValue(r, c).ToDouble() for c, name in enumerate(names)}
            for r in range(table.GetNumberOfRows())]


def build_metrics_table(name: str, rows: list[dict]):
    """A vtkMRMLTableNode (not in any scene) with TABLE_COLUMNS, one row per dict (a missing
    value is empty, 0 or NaN by column type)."""
    defaults = {str: "", int: 0, float: math.nan}
    node = slicer.vtkMRMLTableNode()
    node.SetName(name)
    table = node.GetTable()
    for column, kind in TABLE_COLUMNS:
        array = vtk.vtkStringArray() if kind is str else (vtk.vtkIntArray() if kind is int else vtk.vtkDoubleArray())
        array.SetName(column)
        for row in rows:
            array.InsertNextValue(kind(row.get(column, defaults[kind])))
        table.AddColumn(array)
    return node


def merged_rows(old_rows: list[dict], new_rows: list[dict]) -> list[dict]:
    """The old table's rows of samplers not in `new_rows`, then the new rows, in sampler order."""
    from PatchSamplerLib.method.samplers import SAMPLER_NAMES, sampler_label
    order = [sampler_label(s) for s in SAMPLER_NAMES]
    replaced = {row["Sampler"] for row in new_rows}
    rows = [row for row in old_rows if row.get("Sampler") not in replaced] + new_rows
    return sorted(rows, key=lambda row: order.index(row.get("Sampler")) if row.get("Sampler") in order else len(order))


def updated_metrics_table(scene, segmentation_node, segment_id: str, segment_name: str, rows: list[dict]) -> tuple:
    """(the segment's table "<segment> - PatchSampler metrics" with `rows` merged into the rows of
    its table in `scene`, tagged and not in any scene; the old table nodes it replaces)."""
    old_tables = find_outputs(scene, segmentation_node, segment_id, "metrics")
    old_rows = table_rows(old_tables[0]) if old_tables else []
    table = build_metrics_table(f"{segment_name} - PatchSampler metrics", merged_rows(old_rows, rows))
    tag_output(table, "metrics", segmentation_node, segment_id)
    return table, old_tables
