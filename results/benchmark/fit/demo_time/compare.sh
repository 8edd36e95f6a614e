#!/bin/sh
# The README's first command, wall seconds, this checkout against an older commit (default 759cdd9,
# before the Pillow overview and cli.main.leave), runs interleaved so both see the same machine
# state; plus `import torch` alone as a gauge of that state. Run from the repository root with the
# venv active:  sh results/benchmark/fit/demo_time/compare.sh [COMMIT] [ROUNDS]
OLD=${1:-759cdd9}; ROUNDS=${2:-4}
HERE=$(pwd); WT=$(mktemp -d)
git worktree add -q "$WT/old" "$OLD" || exit 1
CMD="python -m PatchSamplerLib run --input Resources/SampleData/kidney_left_1.5mm.nii.gz --prior kidney --n 8 --k 11 --t 100 --out $WT/out"
wall() { a=$(date +%s.%N); (cd "$1" && $CMD > /dev/null 2>&1); b=$(date +%s.%N); echo "$b - $a" | bc; }
date -u
for i in $(seq "$ROUNDS"); do
  echo "round $i: $OLD $(wall "$WT/old") s, HEAD $(wall "$HERE") s, import torch $( a=$(date +%s.%N); python -c 'import torch'; b=$(date +%s.%N); echo "$b - $a" | bc) s"
done
git worktree remove --force "$WT/old"; rm -rf "$WT"
