"""PatchSampler core library: learned patch sampling for implicit shape reconstruction.

No Slicer or Qt imports here. Layout (lower layers never import higher ones; Testing/test_layout.py):
volume, devices, progress, checkpoints -> data/ -> method/ (cloud -> centres -> patches -> latent ->
grid) -> pipeline, sparse/ -> training/ -> reporting/ -> experiments/ -> cli/.
"""
__version__ = "0.1.0"
