"""Datasets: synthetic shape families, loaders, splits.

- `folder`: `ShapeItem` / `ShapeDataset`, shared reorientation and centred cropping, any
  folder of labelmaps;
- `loaders`: `load_dataset(kind, root, **options)`, the one entry point;
- `verse`, `totalsegmentator`: the thesis's two datasets in their public layouts;
- `synthetic`: the vertebra-like and kidney-like families;
- `splits`: grouped 5-fold cross-validation, 70 / 10 / 20 per fold.
"""
import importlib

_EXPORTS = {"Dropped": "folder", "ShapeDataset": "folder", "ShapeItem": "folder",
            "DATASET_KINDS": "loaders", "load_dataset": "loaders", "load_synthetic": "loaders",
            "Fold": "splits", "cross_validation_folds": "splits"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The names above, imported from their module on first use (PEP 562): importing one light
    submodule (`data.synthetic` for the family names of the command line) does not import every
    loader (about 0.3 s of each command, issue #19)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
