"""Anatomically faithful synthetic shape families (training shapes when real data is absent).

- `rendering`: shared signed-distance primitives, smooth CSG, surface noise and
  segmentation-like rendering (partial volume; optional coarse render + resampling);
- `vertebra`: thoracolumbar vertebrae T10-L5 with dimensions sampled from published
  morphometry (`vertebra_shape`, `VERTEBRA_FAMILY_VERSION`);
- `kidney`: the kidney family.

Submodules are imported on use (``from PatchSamplerLib.data.anatomy.vertebra import ...``).
"""
