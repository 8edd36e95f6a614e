"""Metrics [T §4.5.1]: Dice, average symmetric surface distance (ASD) and HD95, in mm.

Convention (voxel-centre surfaces, documented and tested on concentric spheres):
- surface voxels: foreground voxels with at least one 6-neighbour in the background (the
  outside of the grid counts as background);
- d(a, B): Euclidean distance in mm (voxel spacing respected) from the centre of surface voxel
  a of A to the nearest surface-voxel centre of B;
- ASD = (sum_a d(a, B) + sum_b d(b, A)) / (|S_A| + |S_B|)  (symmetric mean);
- HD95 = max(95th percentile of d(a, B), 95th percentile of d(b, A)).
Empty masks: both empty -> Dice, ASD and HD95 are NaN (undefined); exactly one empty ->
Dice 0, ASD and HD95 +inf (as the reference implementation).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2 |A n B| / (|A| + |B|) of two boolean masks; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface voxels: foreground with a background 6-neighbour (grid border = background)."""
    padded = np.pad(mask.astype(bool), 1)
    eroded = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(3, 1))
    return (padded & ~eroded)[1:-1, 1:-1, 1:-1]


def _crop_to_union(a: np.ndarray, b: np.ndarray, margin: int = 2):
    """Crop both masks to the bounding box of their union (+ margin) to keep EDTs small."""
    union = a | b
    lo = [int(np.flatnonzero(union.any(axis=tuple(x for x in range(3) if x != d)))[0]) for d in range(3)]
    hi = [int(np.flatnonzero(union.any(axis=tuple(x for x in range(3) if x != d)))[-1]) for d in range(3)]
    sl = tuple(slice(max(l - margin, 0), h + margin + 1) for l, h in zip(lo, hi))
    return a[sl], b[sl]


def directed_surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """(distances from A's surface to B's, from B's surface to A's), 1-D arrays in mm.

    Both masks must be non-empty."""
    a, b = _crop_to_union(np.asarray(a, bool), np.asarray(b, bool))
    sa, sb = surface(a), surface(b)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return dist_to_b[sa], dist_to_a[sb]


def surface_metrics(a: np.ndarray, b: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> tuple[float, float]:
    """(ASD, HD95) in mm between two masks, with the empty-mask rules of this module."""
    empty_a, empty_b = not np.any(a), not np.any(b)
    if empty_a and empty_b:
        return float("nan"), float("nan")
    if empty_a or empty_b:
        return float("inf"), float("inf")
    d_ab, d_ba = directed_surface_distances(a, b, spacing)
    asd = (d_ab.sum() + d_ba.sum()) / (len(d_ab) + len(d_ba))
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    return float(asd), float(hd95)


def all_metrics(prediction: np.ndarray, reference: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> dict:
    """{"dice", "asd_mm", "hd95_mm"} of a prediction against a reference mask."""
    asd, hd95 = surface_metrics(prediction, reference, spacing)
    return {"dice": dice(prediction, reference), "asd_mm": asd, "hd95_mm": hd95}


def error_labels(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """uint8 map: 0 background, 1 intersection, 2 extra (prediction only), 3 missing (reference only)."""
    p, r = np.asarray(prediction, bool), np.asarray(reference, bool)
    out = np.zeros(p.shape, np.uint8)
    out[p & r] = 1
    out[p & ~r] = 2
    out[~p & r] = 3
    return out
