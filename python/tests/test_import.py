"""`import stnls` stays free of torch, and the search works with NumPy alone (torch made
unimportable), each checked in a fresh interpreter."""
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("stnls", reason="stnls is not built/installed")

SEARCH = """
import numpy as np
r = np.random.default_rng(0)
vid0 = r.normal(size=(1, 3, 4, 9, 9)).astype(np.float32)
vid1 = r.normal(size=(1, 3, 4, 9, 9)).astype(np.float32)
dists, inds = stnls.search.nls(vid0, vid1, None, None, 5, 1, 3, 6, 2)
assert isinstance(dists, np.ndarray) and dists.shape == (1, 2, 27, 6), dists.shape
assert inds.dtype == np.int32 and inds.shape == (1, 2, 27, 6, 3), inds.shape
g0, g1 = stnls.search.nls_backward(np.ones_like(dists), inds, vid0, vid1, 5, 1, 3, 6, 2)
assert g0.shape == vid0.shape and g1.shape == vid1.shape
"""


def run(code):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_import_does_not_import_torch():
    out = run("""
        import sys
        import stnls
        import stnls.search
        print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))
        assert 'torch' not in sys.modules
    """)
    assert out.strip() == "[]"


def test_numpy_search_does_not_import_torch():
    run("import sys\nimport stnls\n" + SEARCH + "\nassert 'torch' not in sys.modules, 'the numpy path imported torch'\n")


def test_numpy_search_without_torch_installed():
    """torch made unimportable: the array path must not need it."""
    run("""
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked in this test')
        return None
sys.meta_path.insert(0, _NoTorch())
import stnls
""" + SEARCH)
