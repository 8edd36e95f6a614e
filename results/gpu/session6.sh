#!/usr/bin/env bash
# What ran on the lent GPU (device tool, one H200) in the sixth session. Call 1:
#   bash results/gpu/session6.sh first     (CUDA tests, GPU benchmark, start of the kidney 8x9 training)
# later calls: bash results/gpu/session6.sh resume MINUTES   (runs/gpu_k89 carried back)
# Everything it writes comes back as $OUT/gpu.tgz.
set -uo pipefail
export PYTHONUNBUFFERED=1
STAGE=${1:-first}
LIMIT=${LIMIT:-560}                         # seconds for this call's command
RUN=runs/gpu_k89
mkdir -p results/gpu "$RUN"
TRAIN=(python3 -m PatchSamplerLib train-sampler --family kidney --count 64 --val-count 24 --prior kidney
       --n 8 --k 9 --t 100 --mode faithful --anchor fps --initial-temperature 0.02 --soft-labels --lr 1e-4
       --epochs 400 --chunk 1048576 --device cuda --out "$RUN")
if [ "$STAGE" = first ]; then
  { nvidia-smi -L; python3 -c "import sys, torch, numpy; print(sys.version.split()[0], torch.__version__, numpy.__version__, torch.cuda.get_device_name())"; } | tee results/gpu/environment.txt
  python3 -m pytest -q -p no:cacheprovider Testing/test_cuda.py 2>&1 | tee results/gpu/test_cuda.txt
  python3 -m PatchSamplerLib benchmark --device cuda --repeats 3 --out results/gpu/benchmark 2>&1 | tail -40
  timeout $((LIMIT - SECONDS)) "${TRAIN[@]}" --max-minutes "${2:-3}"
else
  timeout $((LIMIT - SECONDS)) "${TRAIN[@]}" --max-minutes "${2:-8}" --resume
fi
nvidia-smi --query-gpu=memory.used,memory.total --format=csv
tar czf "$OUT/gpu.tgz" results/gpu "$RUN"
