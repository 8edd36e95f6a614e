"""Join the cases.csv of several `evaluate` folders that ran parts of one grid (other cells, or
more seeds of the same cells) into one cases.csv: one row per (case, N, K, T, sampler, run), the
first folder's row kept where two have it (the shared rows were copied from the same stored
file). `evaluate` on the output folder with the whole grid then writes table.md without new runs.

    python results/learned_any_nk/fps30/join_rows.py OUT_DIR IN_DIR [IN_DIR ...]
"""
import csv
import sys
from pathlib import Path


def join(out_dir: Path, in_dirs: list[Path]) -> int:
    rows, seen, fields = [], set(), None
    for folder in in_dirs:
        with (folder / "cases.csv").open() as f:
            reader = csv.DictReader(f)
            fields = fields or reader.fieldnames
            for row in reader:
                key = (row["case"], row["n"], row["k"], row["t"], row["sampler"], row["run"])
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "cases.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


if __name__ == "__main__":
    print(join(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]), "rows")
