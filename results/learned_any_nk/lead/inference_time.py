"""Inference time of every bundled any-(N, K) sampler at 4 x 9 and 64 x 31, and of the per-(4, 9)
vertebra-anatomical one (issue #18's "one forward pass of the generator, tens of ms on the CPU"):
`learned_centres` on shape 0 of family seed 3 of the prior's family (the vertebra-anatomical one is
128 x 120 x 90), the cloud built from the mask and the continuation (FPS over the cloud or the
voxels) included, one thread, median of 15 calls after one warm-up.

    python results/learned_any_nk/lead/inference_time.py   (inference_time.log: its output)
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.checkpoints import bundled_any_samplers, bundled_samplers  # noqa: E402
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres  # noqa: E402


def median_ms(call) -> tuple[float, float]:
    """(median, min) milliseconds of 15 calls after one warm-up."""
    call()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.median(times) * 1000, min(times) * 1000


torch.set_num_threads(1)
calls = []
for (prior, t), path in sorted(bundled_any_samplers().items()):
    model, mask = SamplerModel.load(path), make_shape(prior, 3, 0).mask
    label = f"{path.name} ({model.sampler.continuation}), {mask.shape} mask"
    calls += [(f"{label}, {n} x {k}", lambda m=model, x=mask, n=n, k=k: learned_centres(m, x, n, k))
              for n, k in ((4, 9), (64, 31))]
per_nk = SamplerModel.load(bundled_samplers()[("vertebra-anatomical", 4, 9, 100)])
mask = make_shape("vertebra-anatomical", 3, 0).mask
calls.append((f"sampler_vertebra-anatomical_n4_k9_t100.pt, {mask.shape} mask", lambda: learned_centres(per_nk, mask)))
for name, call in calls:
    median, fastest = median_ms(call)
    print(f"{name}: median {median:.1f} ms, min {fastest:.1f} ms")
