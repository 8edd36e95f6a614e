"""The kidney prior trained on one side (left; right kidneys mirrored) against the prior of both
sides on the same held-out kidneys: FPS with the same seeds, each prior on the shapes as it sees
them (the one-sided prior: the `kidney-anatomical-left` family, i.e. the same kidneys with the
right ones mirrored, as a run mirrors a right kidney), paired per kidney (t-test and Wilcoxon,
`experiments.tables.significance_table`).

    python results/sides/compare.py results/sides/both_seed3/cases.csv results/sides/epoch90_seed3/cases.csv
    python results/sides/compare.py results/sides/both_seed1/cases.csv,results/sides/both_seed3/cases.csv \
        results/sides/epoch90_seed1/cases.csv,results/sides/epoch90_seed3/cases.csv      # both sets pooled

(each argument: one cases.csv or several, comma-separated, pooled.)
"""
import csv
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.experiments.tables import significance_table  # noqa: E402

BOTH, LEFT = "fps, prior of both sides", "fps, left prior"


def merged(both_csvs: str, left_csvs: str, out: Path) -> Path:
    """One cases.csv of both evaluations: the sampler column names the prior, the left family's
    case names become the parent family's (kidney-anatomical-left_3_0000 -> kidney-anatomical_3_0000)."""
    rows = []
    for paths, label in ((both_csvs, BOTH), (left_csvs, LEFT)):
        for path in paths.split(","):
            with open(path) as f:
                for row in csv.DictReader(f):
                    row["sampler"] = label
                    row["case"] = row["case"].replace("kidney-anatomical-left_", "kidney-anatomical_")
                    rows.append(row)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(significance_table(merged(sys.argv[1], sys.argv[2], Path(tmp) / "merged.csv"), LEFT, BOTH))
