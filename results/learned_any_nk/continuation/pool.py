"""The twelfth session's any-(N, K) samplers (FPS continued over the voxels; the kidney's lead
starts central) against FPS with 30 seeds over both held-out sets pooled (family seeds 1 and 3,
35 shapes per prior), as `../fps30/pool.py` does for the earlier samplers.

    python results/learned_any_nk/continuation/pool.py > results/learned_any_nk/continuation/pooled.md
"""
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fps30"))
from pool import pooled_csv, significance_table  # noqa: E402

SETS = {prior: [f"continuation/{prior}/seed1", f"continuation/{prior}/seed3"]
        for prior in ("vertebra-anatomical", "kidney-anatomical")}

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for prior, folders in SETS.items():
            path = pooled_csv(folders, Path(tmp) / f"{prior}.csv")
            print(f"## {prior}: any-(N, K) sampler vs FPS (30 seeds), family seeds 1 and 3 pooled\n")
            print(significance_table(path, "learned", "fps"))
            print()
