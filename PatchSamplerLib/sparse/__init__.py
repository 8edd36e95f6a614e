"""Reconstruction from sparse observations [A §2.3]: the inputs (`inputs`: every s-th slice,
thick or orthogonal slices, any labelled voxels), the INR reconstruction from them
(`reconstruction`) and the interpolation baselines (`slice_baselines`)."""
