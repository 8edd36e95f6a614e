"""`python -m PatchSamplerLib` with the fast fit's floor at 384 voxels per step instead of
FAST_MIN_POINTS = 512 (method/fitting.py): how the 4 x 9 rows of this folder were measured.

    PYTHONPATH=. python results/benchmark/fit/floor/bench384.py benchmark --fit ...
"""
import sys

import PatchSamplerLib.method.fitting as fitting

fitting.FAST_MIN_POINTS = 384
if __name__ == "__main__":                     # the peak-memory probe spawns a process that imports this file
    from PatchSamplerLib.cli.main import main
    sys.exit(main(sys.argv[1:]))
