"""Learned rows of a continuation variant (a cases.csv from `evaluate_variant.py`) against the
stored FPS rows (30 seeds) of the same shapes: the paired t-test and Wilcoxon of `evaluate`'s
tables (`experiments.tables.significance_table`), Dice / ASD / HD95.

    python results/learned_any_nk/continuation/compare.py VARIANT_CASES.csv STORED_CASES.csv [...]

Each VARIANT_CASES.csv is paired with the STORED_CASES.csv after it (several pairs pool their
shapes; case names differ between family seeds)."""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.experiments.tables import significance_table  # noqa: E402


def joined_rows(variant: Path, stored: Path, baseline: str = "fps") -> list[str]:
    """The variant's learned rows and the stored `baseline` rows of the variant's (case, N, K) cells."""
    learned = [r for r in variant.read_text().splitlines()[1:] if ",learned," in r]
    cells = {tuple(r.split(",")[:3]) for r in learned}
    others = [r for r in stored.read_text().splitlines()[1:]
              if f",{baseline}," in r and tuple(r.split(",")[:3]) in cells]
    return learned + others


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]]
    header = paths[1].read_text().splitlines()[0]
    rows = [row for v, s in zip(paths[::2], paths[1::2]) for row in joined_rows(v, s)]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "cases.csv"
        csv.write_text("\n".join([header] + rows) + "\n")
        print(significance_table(csv, "learned", "fps"))
