"""Faithful vs fast sampler training on the same small case: time per epoch, peak memory,
validation Dice. Each mode runs `python -m PatchSamplerLib train-sampler` in its own process;
peak memory is that process's peak resident set size, as logged by the training
(`peak_rss_gb` in train_log.jsonl).

    python results/sampler_modes/compare.py            # writes results/sampler_modes/table.md
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CASE = ["--family", "vertebra", "--scale", "0.5", "--count", "8", "--val-count", "4", "--prior", "vertebra",
        "--n", "4", "--k", "9", "--t", "100", "--epochs", "3", "--batch-size", "4", "--threads", "1"]


def run_mode(mode: str) -> dict:
    out = HERE / "runs" / mode
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "PatchSamplerLib", "train-sampler", *CASE, "--mode", mode, "--out", str(out)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {"mode": mode, "seconds_per_epoch": sum(r["seconds"] for r in rows) / len(rows),
            "peak_rss_gb": max(r["peak_rss_gb"] for r in rows), "val_dice": [round(r["val_dice"], 4) for r in rows]}


def main() -> None:
    results = [run_mode(m) for m in ("faithful", "fast")]
    lines = ["| mode | seconds / epoch (8 shapes; training only) | peak RSS GB | validation Dice per epoch |",
             "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['seconds_per_epoch']:.1f} | {r['peak_rss_gb']:.2f} | {r['val_dice']} |")
    text = "\n".join(lines) + "\n\nCase: `" + " ".join(CASE) + "`\n"
    (HERE / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
