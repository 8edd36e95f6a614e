"""The untrained FPS anchor (an any-(N, K) sampler with zero offsets, t = 0.05) on the first 6
held-out shapes of the grid evaluation, beside the trained sampler's and FPS's rows of
<family>/grid/cases.csv (same fit, seed 0).

    PYTHONPATH=. python results/learned_any_nk/anchor/anchor_eval.py vertebra-anatomical 6 > anchor_eval.log
"""
import csv, sys, numpy as np, torch
torch.set_num_threads(1)
from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.sampler import SamplerModel
from PatchSamplerLib.pipeline import RunConfig, reconstruct
fam = sys.argv[1]; count = int(sys.argv[2])
prior = ShapePrior.load(fam)
anchor = SamplerModel.new(64, 0, 100, initial_temperature=0.05, anchor="fps", conditioned=True)
anchor.metadata["prior_weights_sha256"] = prior.fingerprint()
anchor.sampler.eval()
rows = list(csv.DictReader(open(f"results/learned_any_nk/{fam}/grid/cases.csv")))
vols = make_shapes(fam, count, seed=1)
for n, k in ((4, 9), (8, 9)):
    out = []
    for i, v in enumerate(vols):
        case = f"{fam}_1_{i:04d}"
        d = reconstruct(v, RunConfig(n=n, k=k, t=100, sampler="learned", seed=0, fit="fast"), prior, learned=anchor).metrics["dice"]
        l = [float(r["dice"]) for r in rows if (r["case"], r["n"], r["k"], r["sampler"]) == (case, str(n), str(k), "learned")]
        f = [float(r["dice"]) for r in rows if (r["case"], r["n"], r["k"], r["sampler"]) == (case, str(n), str(k), "fps")]
        out.append((d, l[0] if l else np.nan, np.mean(f) if f else np.nan))
    a = np.array(out)
    print(fam, n, k, "anchor %.4f trained %.4f fps %.4f" % tuple(np.nanmean(a, 0)), flush=True)
