"""The fit's time at 4 x 9, fast against the thesis's (adam), interleaved in one process with
nothing else running: `benchmark --fit` runs the two priors side by side, and at 4 x 9 (a step of
384 voxels) the fast fit's time moves by 10-20 % with the load of the other core.

For each prior, 5 held-out shapes of family seed 2 (the benchmark's), FPS patches (seed 0),
T = 100, one thread: the latent fit alone (`method.fitting.fit_patches`), fast then adam, 3
rounds; prints the median seconds of each and their ratio.

    PYTHONPATH=. python results/benchmark/fit/speed_4x9/speed.py > results/benchmark/fit/speed_4x9/speed.log
"""
import statistics
import time

import torch

from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.fitting import fit_patches, fit_settings
from PatchSamplerLib.method.frame import place_frame
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.patches import extract_patches
from PatchSamplerLib.orientation import to_anatomical

torch.set_num_threads(1)
N, K, ROUNDS, SHAPES = 4, 9, 3, 5
for prior_name in ("vertebra-anatomical", "kidney-anatomical", "vertebra", "kidney"):
    prior = ShapePrior.load(prior_name)
    seconds = {"fast": [], "adam": []}
    for index in range(SHAPES):
        anat, _ = to_anatomical(make_shape(prior_name, 2, index))
        centre_mm, _, _ = place_frame(anat.mask, anat.spacing, prior.extent_mm, [])
        centres = fps_centres(anat.mask, N, seed=0, spacing=anat.spacing)
        _, labels, coords = extract_patches(anat.mask, anat.spacing, centres, K, centre_mm)
        c, y = coords.reshape(1, -1, 3), labels.reshape(1, -1)
        for _ in range(ROUNDS):
            for fit in ("fast", "adam"):
                start = time.perf_counter()
                fit_patches(prior.decoder, c, y, fit_settings(fit, N * K ** 3), k=K)
                seconds[fit].append(time.perf_counter() - start)
    fast, adam = statistics.median(seconds["fast"]), statistics.median(seconds["adam"])
    print(f"{prior_name}: {N} x {K}, fast {fast:.3f} s, adam {adam:.3f} s (medians of {SHAPES} shapes x {ROUNDS} "
          f"rounds), speed-up {adam / fast:.2f}x", flush=True)
