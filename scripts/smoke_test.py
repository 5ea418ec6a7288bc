"""Smoke test of an installed stnls wheel: a NumPy search and its backward on a random
video, run without torch and from outside the source tree. Used by scripts/test.sh (in a
fresh venv) and by cibuildwheel's test-command.

Exits non-zero on any failure."""
import os
import sys

import numpy as np

import stnls

# The wheel's promise: the array path never loads torch.
assert "torch" not in sys.modules, "import stnls imported torch"

# The package under test must be the installed one, not sources on sys.path.
here = os.path.dirname(os.path.abspath(__file__))
source_pkg = os.path.join(os.path.dirname(here), "python", "stnls")
assert os.path.dirname(os.path.abspath(stnls.__file__)) != source_pkg, \
    f"stnls imported from the source tree: {stnls.__file__}"

rng = np.random.default_rng(0)
B, T, C, H, W = 1, 3, 4, 16, 16
ws, wt, ps, k, nheads, stride0 = 5, 1, 3, 7, 2, 4
vid0 = rng.standard_normal((B, T, C, H, W)).astype(np.float32)
vid1 = rng.standard_normal((B, T, C, H, W)).astype(np.float32)
fflow = rng.uniform(-2, 2, (B, T, 2, H, W)).astype(np.float32)
bflow = rng.uniform(-2, 2, (B, T, 2, H, W)).astype(np.float32)

dists, inds = stnls.search.nls(vid0, vid1, fflow, bflow, ws, wt, ps, k, nheads=nheads,
                               dist_type="l2", stride0=stride0)
Q = T * ((H - 1) // stride0 + 1) * ((W - 1) // stride0 + 1)
assert isinstance(dists, np.ndarray) and isinstance(inds, np.ndarray)
assert dists.shape == (B, nheads, Q, k) and dists.dtype == np.float32, (dists.shape, dists.dtype)
assert inds.shape == (B, nheads, Q, k, 3) and inds.dtype == np.int32, (inds.shape, inds.dtype)
assert np.all(np.isfinite(dists))
assert np.all(np.diff(dists, axis=-1) >= 0), "l2 distances must be sorted best (smallest) first"
assert np.all((inds[..., 0] >= 0) & (inds[..., 0] < T))
assert np.all((inds[..., 1] >= 0) & (inds[..., 1] < H))
assert np.all((inds[..., 2] >= 0) & (inds[..., 2] < W))

# Searching a video against itself: each query's best l2 match is itself, at distance 0.
d_self, i_self = stnls.search.nls(vid0, vid0, None, None, ws, wt, ps, k, dist_type="l2",
                                  stride0=stride0)
assert np.all(d_self[..., 0] == 0), "self search: best distance is not 0"

grad0, grad1 = stnls.search.nls_backward(np.ones_like(dists), inds, vid0, vid1, ws, wt, ps, k,
                                         nheads=nheads, dist_type="l2", stride0=stride0)
assert grad0.shape == vid0.shape and grad1.shape == vid1.shape
assert np.all(np.isfinite(grad0)) and np.all(np.isfinite(grad1))

assert "torch" not in sys.modules, "the NumPy search imported torch"

# The CUDA runtime is linked statically and the driver is found at run time: a repaired
# wheel must not carry either (auditwheel would put them in stnls.libs).
libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(stnls.__file__))), "stnls.libs")
bundled = sorted(os.listdir(libs)) if os.path.isdir(libs) else []
assert not [f for f in bundled if f.startswith(("libcudart", "libcuda."))], f"bundled CUDA libraries: {bundled}"
print(f"stnls {stnls.__version__} smoke test OK (cuda_available={stnls.cuda_available()}, "
      f"from {os.path.dirname(stnls.__file__)})")
