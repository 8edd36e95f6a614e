#!/usr/bin/env bash
# The CUDA-graph latent fit (issue #19 item 3, `PatchSamplerLib/method/graphs.py`) on a lent GPU:
# one call of the device tool, about 4-6 minutes; everything lands in $OUT (results/gpu/graphs/ here).
#   bash results/gpu/graphs.sh
# 1. the CUDA tests (the graphed fit equals the eager one; one capture per shape; reconstructions equal);
# 2. the GPU benchmark with graphs (default) and without (PATCHSAMPLER_CUDA_GRAPHS=0), same process
#    settings: fit / decode / total seconds per (N, K) for the 85x85x110 kidney and the 128x120x90
#    vertebra (the issue's < 0.1 s target), median of 3 runs (the first captures, the others replay);
# 3. the fast-fit benchmark's timing of the thesis grid on the kidney prior, graphs on and off.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-results/gpu/graphs}
mkdir -p "$OUT"
{ nvidia-smi -L; python3 -c "import sys, torch, numpy; print(sys.version.split()[0], torch.__version__, numpy.__version__, torch.cuda.get_device_name())"; } | tee "$OUT/environment.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider Testing/test_cuda.py Testing/test_graphs.py 2>&1 | tail -30 | tee "$OUT/test_cuda.txt"
timeout 150 python3 -m PatchSamplerLib benchmark --device cuda --repeats 3 --out "$OUT/benchmark_graphs" 2>&1 | tail -5
PATCHSAMPLER_CUDA_GRAPHS=0 timeout 150 python3 -m PatchSamplerLib benchmark --device cuda --repeats 3 --out "$OUT/benchmark_eager" 2>&1 | tail -5
for m in graphs eager; do echo "== $m"; sed -n '/## Reconstruction/,/^Ratio/p' "$OUT/benchmark_$m/benchmark.md"; done | tee "$OUT/summary.txt"
