"""The bundled any-(N, K) samplers against FPS with 30 seeds over both held-out sets pooled
(family seeds 1 and 3 of each anatomical prior; case names differ, so the rows are joined): the
paired t-test and Wilcoxon over all shapes, as `evaluate`'s tables (`experiments.tables`).

    python results/learned_any_nk/fps30/pool.py > results/learned_any_nk/fps30/pooled.md
"""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.experiments.tables import significance_table  # noqa: E402

SETS = {  # prior: (sampler folder, [cases.csv of family seed 1, of seed 3])
    "vertebra-anatomical": ["lead/vertebra-anatomical/seed1_fps30", "lead/vertebra-anatomical/seed3_fps30"],
    "kidney-anatomical": ["lead1_min8/kidney-anatomical/seed1_fps30", "lead1_min8/kidney-anatomical/seed3_fps30"],
}
HERE = ROOT / "results" / "learned_any_nk"


def pooled_csv(folders: list[str], out: Path) -> Path:
    lines = []
    for i, folder in enumerate(folders):
        rows = (HERE / folder / "cases.csv").read_text().splitlines()
        lines += rows if i == 0 else rows[1:]
    out.write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for prior, folders in SETS.items():
            path = pooled_csv(folders, Path(tmp) / f"{prior}.csv")
            print(f"## {prior}: any-(N, K) sampler vs FPS (30 seeds), family seeds 1 and 3 pooled\n")
            print(significance_table(path, "learned", "fps"))
            print()
