"""The method, stage by stage [T ch. 3; A §2]: voxels -> point cloud (`pointcloud`) -> patch
centres (`baselines`, the learned `sampler`, one registry of them in `samplers`) -> patches
(`patches`) -> a latent fitted through the INR (`inr`) -> the decoded grid (`decoding`) in the
prior's frame (`frame`); `losses` and `metrics` score each step."""
