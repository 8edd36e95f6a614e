"""The MRML side of the PatchSampler module: what PatchSamplerLogic.py orchestrates.

    choices        N, K, T ranges, sampler choices and labels, which samplers can run
    dependencies   the module's pip requirements: which are missing, installing them
    geometry       segments <-> (I, J, K) arrays, IJK / RAS / LPS, the run's grid, parent transforms
    outputs        result segmentation and patch-centre nodes, styles, tagging, commit / replace
    metrics_table  the per-segment metrics table node
    slices         a segment drawn on a few slice views: which voxels are known (tilted grids too)

A package, not files next to PatchSampler.py, because Slicer loads every .py file directly in a
module folder as a module. Nothing here imports torch or PatchSamplerLib at load (the module
must load before either is importable); the functions that need the library import it.
"""
