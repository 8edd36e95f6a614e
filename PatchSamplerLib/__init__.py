"""PatchSampler core library: learned patch sampling for implicit shape reconstruction.

No Slicer or Qt imports here; see DESIGN.md for the stage-per-module layout.
"""
__version__ = "0.1.0"
