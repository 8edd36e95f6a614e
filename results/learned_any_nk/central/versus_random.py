"""The bundled any-(N, K) samplers against random sampling (3 seeds) on the 15 seed-1 shapes of
each family: for the anatomical priors the learned rows of their evaluations here joined with the
random rows of `../lead/<prior>/grid/cases.csv` (the same shapes, the same uniform-subset fast fit:
their FPS rows agree value for value); for the synthetic `kidney` prior (fifteenth session) the
rows of `../synthetic/kidney/seed1/` and `../synthetic/kidney/random/`, for `vertebra` (sixteenth
session) those of `../synthetic/vertebra_lead2/seed1/` and `../synthetic/vertebra/random/` (the
product's fast fit, all four).
Paired t-test and Wilcoxon (`experiments.tables.significance_table`).

    python results/learned_any_nk/central/versus_random.py > results/learned_any_nk/central/versus_random.md
"""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.experiments.tables import significance_table  # noqa: E402
sys.path.insert(0, str(ROOT / "results" / "learned_any_nk" / "continuation"))
from compare import joined_rows  # noqa: E402

HERE = ROOT / "results" / "learned_any_nk"
BUNDLED = {"vertebra-anatomical": (HERE / "continuation" / "vertebra-anatomical" / "seed1" / "cases.csv",
                                   HERE / "lead" / "vertebra-anatomical" / "grid" / "cases.csv"),
           "kidney-anatomical": (HERE / "central" / "kidney-anatomical" / "seed1" / "cases.csv",
                                 HERE / "lead" / "kidney-anatomical" / "grid" / "cases.csv"),
           "kidney": (HERE / "synthetic" / "kidney" / "seed1" / "cases.csv",
                      HERE / "synthetic" / "kidney" / "random" / "cases.csv"),
           "vertebra": (HERE / "synthetic" / "vertebra_lead2" / "seed1" / "cases.csv",
                        HERE / "synthetic" / "vertebra" / "random" / "cases.csv")}


def joined(learned: Path, random: Path, out: Path) -> Path:
    """A cases.csv with the learned rows of `learned` and the random rows of `random` on its cells."""
    head = learned.read_text().splitlines()[0]
    out.write_text("\n".join([head] + joined_rows(learned, random, "random")) + "\n")
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for prior, (learned, random) in BUNDLED.items():
            path = joined(learned, random, Path(tmp) / f"{prior}.csv")
            print(f"## {prior}: the bundled any-(N, K) sampler vs random (3 seeds), family seed 1\n")
            print(significance_table(path, "learned", "random"))
            print()
