import sys, time, torch, numpy as np
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..', '..', '..')); torch.set_num_threads(int(sys.argv[3]))
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.inr import ShapePrior, fit_latent
sys.path.insert(0, __import__('os').path.dirname(__file__))
from patch_sets import prepare_encoder_shape, draw_patches, fit
from PatchSamplerLib.training.scores import dice_at_stride
fam, prior = sys.argv[1], sys.argv[2]
p = ShapePrior.load(prior)
res = {}
variants = [('adam100', dict(steps=100)), ('b2048', dict(steps=100, points_per_step=2048)),
            ('b1024', dict(steps=100, points_per_step=1024)), ('b512', dict(steps=100, points_per_step=512)),
            ('b256', dict(steps=100, points_per_step=256)),
            ('cos60_b512', dict(steps=60, lr=0.015, points_per_step=512, schedule='cosine'))]
for i in range(int(sys.argv[4])):
    s = prepare_encoder_shape(make_shape(fam, 1, i), 3.0)
    for n, k in ((4, 9), (8, 9), (4, 13), (8, 11), (12, 13)):
        c, y = draw_patches(s, n, k, False, 0); c, y = c[None], y[None]
        for name, kw in variants:
            t = time.perf_counter(); z = fit(p.decoder, c, y, **kw); dt = time.perf_counter() - t
            d = dice_at_stride(p.decoder, z, s.volume, s.centre_mm)
            res.setdefault((n, k, name), []).append((d, dt))
        print(i, n, k, [(name, round(res[(n, k, name)][-1][0], 4), round(res[(n, k, name)][-1][1], 2)) for name, _ in variants], flush=True)
for (n, k, name), v in res.items():
    a = np.array(v); ref = np.array(res[(n, k, 'adam100')])
    print(n, k, name, 'dice', a[:, 0].mean().round(4), 'diff', (a[:, 0] - ref[:, 0]).mean().round(4), 'min', (a[:, 0] - ref[:, 0]).min().round(4), 's', a[:, 1].mean().round(3), 'speedup', (ref[:, 1].mean() / a[:, 1].mean()).round(1))
