import sys, time, json
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..', '..', '..'))
import numpy as np, torch
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.inr import ShapePrior, fit_latent
from PatchSamplerLib.method.losses import occupancy_loss, latent_regulariser
from PatchSamplerLib.method.frame import place_frame
from PatchSamplerLib.method.patches import extract_patches
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.decoding import decode_in_frame, DEFAULT_CHUNK
from PatchSamplerLib.method.metrics import all_metrics
from PatchSamplerLib.orientation import to_anatomical

family, prior_name, configs = sys.argv[1], sys.argv[2], sys.argv[3].split(',')
prior = ShapePrior.load(prior_name)
dec = prior.decoder

def lbfgs(c, y, iters, z0=None, hist=20):
    z = (torch.zeros(1, 128) if z0 is None else z0.clone()).requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=iters, history_size=hist, line_search_fn='strong_wolfe')
    n = [0]
    def closure():
        opt.zero_grad(); n[0] += 1
        l = occupancy_loss(dec(c, z), y) + 1e-4 * latent_regulariser(z); l.backward(); return l
    for p in dec.parameters(): p.requires_grad_(False)
    opt.step(closure)
    return z.detach(), n[0]

def cosfit(c, y, steps, lr, budget, z0=None, lr_end=0.0):
    z = (torch.zeros(1, 128) if z0 is None else z0.clone()).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    g = torch.Generator().manual_seed(0)
    P = c.shape[1]
    for p in dec.parameters(): p.requires_grad_(False)
    import math
    for s in range(steps):
        for gr in opt.param_groups: gr['lr'] = lr_end + (lr - lr_end) * 0.5 * (1 + math.cos(math.pi * s / steps))
        idx = torch.randint(P, (budget,), generator=g) if budget < P else None
        cc, yy = (c, y) if idx is None else (c[:, idx], y[:, idx])
        opt.zero_grad(); l = occupancy_loss(dec(cc, z), yy) + 1e-4 * latent_regulariser(z); l.backward(); opt.step()
    return z.detach()

def variants(c, y):
    yield 'adam100', lambda: fit_latent(dec, c, y, 100)
    yield 'adam100_b2048', lambda: fit_latent(dec, c, y, 100, points_per_step=2048)
    yield 'cos40_03_b2048', lambda: cosfit(c, y, 40, 0.03, 2048)
    yield 'cos30_05_b2048', lambda: cosfit(c, y, 30, 0.05, 2048)
    yield 'cos50_03_b1024', lambda: cosfit(c, y, 50, 0.03, 1024)
    yield 'cos25_05_b1024', lambda: cosfit(c, y, 25, 0.05, 1024)
    return

    yield 'adam100', lambda: fit_latent(dec, c, y, 100)
    yield 'adam100_b2048', lambda: fit_latent(dec, c, y, 100, points_per_step=2048)
    yield 'adam30_lr03', lambda: fit_latent(dec, c, y, 30, lr=0.03)
    yield 'adam30_lr03_b2048', lambda: fit_latent(dec, c, y, 30, lr=0.03, points_per_step=2048)
    yield 'lbfgs15', lambda: lbfgs(c, y, 15)[0]
    yield 'lbfgs30', lambda: lbfgs(c, y, 30)[0]

rows = []
for i in range(int(sys.argv[5]) if len(sys.argv) > 5 else 6):
    vol, _ = to_anatomical(make_shape(family, 1, i))
    centre_mm, lo, hi = place_frame(vol.mask, vol.spacing, prior.extent_mm, [])
    for cfg in configs:
        n, k = map(int, cfg.split('x'))
        cen = np.asarray(fps_centres(vol.mask, n, seed=0, spacing=vol.spacing), np.float32)
        _, vals, mm = extract_patches(vol.mask, vol.spacing, cen, k, centre_mm)
        c, y = mm.reshape(1, -1, 3), vals.reshape(1, -1).float()
        for name, f in variants(c, y):
            t0 = time.perf_counter(); z = f(); dt = time.perf_counter() - t0
            rec, _ = decode_in_frame(dec, z, vol.shape, vol.spacing, centre_mm, lo, hi, False, DEFAULT_CHUNK)
            d = all_metrics(rec, vol.mask, vol.spacing)['dice']
            rows.append(dict(shape=i, cfg=cfg, v=name, dice=d, s=dt))
            print(i, cfg, name, round(d, 4), round(dt, 2), flush=True)
ref = {(r['shape'], r['cfg']): r['dice'] for r in rows if r['v'] == 'adam100'}
from collections import defaultdict
g = defaultdict(list)
for r in rows: g[(r['cfg'], r['v'])].append((r['dice'], r['dice'] - ref[(r['shape'], r['cfg'])], r['s']))
for key, v in g.items():
    a = np.array(v); print(key, a.mean(0).round(4), 'min diff', a[:, 1].min().round(4))
json.dump(rows, open(sys.argv[6] if len(sys.argv) > 6 else '/tmp/fx/rows.json', 'w'))
