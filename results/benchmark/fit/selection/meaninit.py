import sys, time, torch, numpy as np
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..', '..', '..')); torch.set_num_threads(1)
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.inr import ShapePrior, fit_latent
sys.path.insert(0, __import__('os').path.dirname(__file__))
from patch_sets import prepare_encoder_shape, draw_patches, fit
from PatchSamplerLib.training.scores import dice_at_stride
fam = sys.argv[1]
p = ShapePrior.load(fam)
mean = torch.tensor(p.metadata['mean_latent'])[None]
print('mean norm', mean.norm().item())
res = {}
for i in range(4):
    s = prepare_encoder_shape(make_shape(fam, 1, i), 3.0)
    for n, k in ((4, 9), (8, 11)):
        c, y = draw_patches(s, n, k, False, 0); c, y = c[None], y[None]
        for name, kw in [('adam100', dict(steps=100)), ('adam100_b2048', dict(steps=100, points_per_step=2048)),
                         ('mean_adam100_b2048', dict(steps=100, points_per_step=2048, init=mean)),
                         ('mean0', dict(steps=0, init=mean)),
                         ('mean_cos30_b2048', dict(steps=30, points_per_step=2048, init=mean, schedule='cosine')),
                         ('mean_cos30_03_b2048', dict(steps=30, lr=0.03, points_per_step=2048, init=mean, schedule='cosine')),
                         ('mean_cos50_02_b1024', dict(steps=50, lr=0.02, points_per_step=1024, init=mean, schedule='cosine'))]:
            t = time.perf_counter(); z = fit(p.decoder, c, y, **kw); dt = time.perf_counter() - t
            d = dice_at_stride(p.decoder, z, s.volume, s.centre_mm)
            res.setdefault((n, k, name), []).append((d, dt))
            print(i, n, k, name, round(d, 4), round(dt, 2), flush=True)
for key, v in res.items():
    a = np.array(v); print(key, a.mean(0).round(4))
