#!/usr/bin/env bash
# What ran on the lent GPU (device tool, one H200) in the sixth session; everything it writes
# comes back as $OUT/gpu.tgz.
#   bash results/gpu/session6.sh first 3    call 1: CUDA tests, GPU benchmark (stopped at a bf16 bug),
#                                           kidney 8x9 faithful training at lr 1e-4 for 3 min
#   bash results/gpu/session6.sh sweep 5    call 2: CUDA tests, GPU benchmark, then four kidney 8x9
#                                           faithful trainings side by side for 5 min
#   bash results/gpu/session6.sh final      call 3: CUDA tests, GPU benchmark (bf16 fixed), and the held-out
#                                           kidney seed-3 evaluation of the kidney (8, 9) sampler vs FPS
#   LIMIT=320 bash results/gpu/session6.sh vertebra 3.5
#                                           call 4: two vertebra (8, 9) faithful trainings from the FPS anchor
set -uo pipefail
export PYTHONUNBUFFERED=1
STAGE=${1:-first}
MINUTES=${2:-3}
LIMIT=${LIMIT:-560}                         # seconds for this call's command
FAMILY=kidney
mkdir -p results/gpu
train() {  # OUT_DIR, extra options: (8, 9), T = 100, faithful, FPS anchor at t = 0.02, on the GPU
  local out=$1; shift
  timeout $((LIMIT - SECONDS)) python3 -m PatchSamplerLib train-sampler --family "$FAMILY" --count 64 --val-count 24 \
    --prior "$FAMILY" --n 8 --k 9 --t 100 --mode faithful --anchor fps --initial-temperature 0.02 --epochs 400 \
    --chunk 1048576 --device cuda --max-minutes "$MINUTES" --out "$out" "$@" > "$out.out" 2>&1
}
if [ "$STAGE" = vertebra ]; then
  FAMILY=vertebra; mkdir -p runs/vsweep
  train runs/vsweep/soft_lr3e-5 --soft-labels --lr 3e-5 &
  train runs/vsweep/hard_lr1e-5 --lr 1e-5 &
  wait
  for f in runs/vsweep/*.out; do echo "== $f"; grep -v "^\s*$" "$f" | tail -8; done
  tar czf "$OUT/gpu.tgz" runs/vsweep
  exit 0
fi
{ nvidia-smi -L; python3 -c "import sys, torch, numpy; print(sys.version.split()[0], torch.__version__, numpy.__version__, torch.cuda.get_device_name())"; } | tee results/gpu/environment.txt
python3 -m pytest -q -p no:cacheprovider Testing/test_cuda.py 2>&1 | tee results/gpu/test_cuda_$STAGE.txt
python3 -m PatchSamplerLib benchmark --device cuda --repeats 3 --out results/gpu/benchmark 2>&1 | tail -40
mkdir -p runs
if [ "$STAGE" = final ]; then
  EVAL=(python3 -m PatchSamplerLib evaluate --family kidney --count 20 --data-seed 3 --configs 8x9 --t 100
        --runs 30 --prior kidney --device cuda)
  timeout $((LIMIT - SECONDS)) "${EVAL[@]}" --samplers learned --out runs/seed3_learned > runs/seed3_learned.out 2>&1 &
  timeout $((LIMIT - SECONDS)) "${EVAL[@]}" --samplers fps --out runs/seed3_fps > runs/seed3_fps.out 2>&1 &
  wait
  tail -5 runs/seed3_*.out
  RUNS="runs/seed3_*"
elif [ "$STAGE" = first ]; then
  mkdir -p runs && train runs/gpu_k89 --soft-labels --lr 1e-4
  RUNS=runs/gpu_k89*
else
  mkdir -p runs/sweep
  train runs/sweep/soft_lr1e-5 --soft-labels --lr 1e-5 &
  train runs/sweep/soft_lr3e-5 --soft-labels --lr 3e-5 &
  train runs/sweep/soft_lr3e-6 --soft-labels --lr 3e-6 &
  train runs/sweep/hard_lr1e-5 --lr 1e-5 &
  wait
  RUNS=runs/sweep
  for f in runs/sweep/*.out; do echo "== $f"; grep -v "^\s*$" "$f" | tail -12; done
fi
nvidia-smi --query-gpu=memory.used,memory.total --format=csv
tar czf "$OUT/gpu.tgz" results/gpu $RUNS
