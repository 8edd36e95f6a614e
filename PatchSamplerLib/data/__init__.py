"""Datasets: synthetic shape families, loaders, splits.

- `folder`: `ShapeItem` / `ShapeDataset`, shared reorientation and centred cropping, any
  folder of labelmaps;
- `loaders`: `load_dataset(kind, root, **options)`, the one entry point;
- `verse`, `totalsegmentator`: the thesis's two datasets in their public layouts;
- `synthetic`: the vertebra-like and kidney-like families;
- `splits`: grouped 5-fold cross-validation, 70 / 10 / 20 per fold.
"""
from PatchSamplerLib.data.folder import Dropped, ShapeDataset, ShapeItem  # noqa: F401
from PatchSamplerLib.data.loaders import DATASET_KINDS, load_dataset, load_synthetic  # noqa: F401
from PatchSamplerLib.data.splits import Fold, cross_validation_folds  # noqa: F401
