"""Datasets: synthetic shape families, loaders, splits.

- `folder`: `ShapeItem` / `ShapeDataset`, shared reorientation and centred cropping, any
  folder of labelmaps, and `load_dataset(kind, root, **options)`, the one entry point;
- `verse`, `totalsegmentator`: the thesis's two datasets in their public layouts;
- `synthetic`: the vertebra-like and kidney-like families;
- `splits`: grouped 5-fold cross-validation, 70 / 10 / 20 per fold.
"""
from .folder import DATASET_KINDS, Dropped, ShapeDataset, ShapeItem, load_dataset  # noqa: F401
from .splits import Fold, cross_validation_folds  # noqa: F401
