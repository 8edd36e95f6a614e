import sys, time, torch, numpy as np, math
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..', '..', '..')); torch.set_num_threads(1)
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.inr import ShapePrior, fit_latent, initial_latent, adam_update_, _point_subsets
from PatchSamplerLib.method.losses import occupancy_loss, latent_regulariser
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.patches import extract_patches
from PatchSamplerLib.training.points import prepare_shape
from PatchSamplerLib.training.scores import dice_at_stride
fam, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
p = ShapePrior.load(fam); dec = p.decoder.requires_grad_(False)

def fit(c, y, size, steps=100, avg=0, decay=0, final=None, final_steps=0):
    z = initial_latent(1).requires_grad_(True); m = torch.zeros_like(z); v = torch.zeros_like(z)
    sub = _point_subsets(c.shape[1], size, 0); acc = []; P = c.shape[1]
    for s in range(steps):
        idx = next(sub)
        if final and s >= steps - final_steps:
            idx = torch.randint(P, (final,)) if final < P else None
        cc, yy = (c, y) if idx is None else (c[:, idx], y[:, idx])
        l = occupancy_loss(dec(cc, z), yy) + 1e-4 * latent_regulariser(z)
        (g,) = torch.autograd.grad(l, z)
        lr = 0.01 if s < steps - decay else 0.01 * (steps - s) / decay
        with torch.no_grad(): adam_update_(z, g, m, v, s + 1, lr)
        if avg and s >= steps - avg: acc.append(z.detach().clone())
    return torch.stack(acc).mean(0) if avg else z.detach()

V = {'adam100': lambda c, y: fit(c, y, None), 'b512': lambda c, y: fit(c, y, 512), 'b256': lambda c, y: fit(c, y, 256),
     'b512_avg10': lambda c, y: fit(c, y, 512, avg=10), 'b512_decay20': lambda c, y: fit(c, y, 512, decay=20),
     'b256_decay20': lambda c, y: fit(c, y, 256, decay=20),
     'b384_last10x4096': lambda c, y: fit(c, y, 384, final=4096, final_steps=10)}
res = {}
for i in range(int(sys.argv[4])):
    vol = make_shape(fam, 1, i); t = prepare_shape(vol, 3.0)
    cen = fps_centres(vol.mask, n, 0, vol.spacing)
    _, lab, co = extract_patches(vol.mask, vol.spacing, cen, k, t.centre_mm)
    c, y = co.reshape(1, -1, 3), lab.reshape(1, -1).float()
    for name, f in V.items():
        t0 = time.perf_counter(); z = f(c, y); dt = time.perf_counter() - t0
        res.setdefault(name, []).append((dice_at_stride(dec, z, vol, t.centre_mm), dt))
    print(i, {k_: round(v_[-1][0], 4) for k_, v_ in res.items()}, flush=True)
ref = np.array(res['adam100'])
for name, v in res.items():
    a = np.array(v); d = a[:, 0] - ref[:, 0]
    print(n, k, name, 'diff mean', d.mean().round(4), 'sd', d.std().round(4), 's', a[:, 1].mean().round(3))
