"""Inference time of the bundled any-(N, K) sampler against the per-(4, 9) one (issue #18's
"one forward pass of the generator, tens of ms on the CPU"): `learned_centres` on a 128 x 120 x 90
anatomical vertebra (family seed 3, shape 0), cloud built from the mask included, one thread,
median of 15 calls after one warm-up.

    python results/learned_any_nk/lead/inference_time.py   (inference_time.log: its output)
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres  # noqa: E402

torch.set_num_threads(1)
models = ROOT / "Resources" / "Models"
any_nk = SamplerModel.load(models / "sampler_vertebra-anatomical_any_t100.pt")
per_nk = SamplerModel.load(models / "sampler_vertebra-anatomical_n4_k9_t100.pt")
mask = make_shape("vertebra-anatomical", 3, 0).mask
for name, call in (("any-(N, K), 4 x 9", lambda: learned_centres(any_nk, mask, 4, 9)),
                   ("any-(N, K), 64 x 31", lambda: learned_centres(any_nk, mask, 64, 31)),
                   ("per-(4, 9)", lambda: learned_centres(per_nk, mask))):
    call()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    print(f"{name}: median {np.median(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms ({mask.shape} mask)")
