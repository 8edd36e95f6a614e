"""`python -m PatchSamplerLib evaluate ...` with the fast fit as it was before the ninth session
(uniform voxel subsets, a floor of 512 voxels a step), so that new learned rows are compared
with the FPS rows the earlier attempts computed with that fit (their cases.csv, copied). The
uniform path of `method.fitting` is unchanged, so this reproduces those rows exactly (checked on
an FPS row of family seed 3: the same Dice to 6 digits). From the repository root:

    PYTHONPATH=. python results/learned_any_nk/lead1_min8/evaluate_uniform_fit.py evaluate ...
"""
import sys

from PatchSamplerLib.method import fitting

fitting.FAST_BOUNDARY_WEIGHT = 1.0
fitting.FAST_MIN_POINTS = 512

from PatchSamplerLib.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
