"""Training [A §2, App. A; T §3.6]: one loop (`loop`: epochs, logs, time budget, atomic
checkpoints, resume, best model, curves) shared by the INR prior (`prior`, and from sparse
slices `sparse_prior`) and the learned sampler (`sampler`, its start `sampler_init`); the point
tables they sample from (`points`), the validation score (`scores`), the memory budget of a
prior training step (`budget`) and prior training on several processes with DDP (`distributed`)."""
