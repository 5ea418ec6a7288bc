"""Shared pytest fixtures: the `device` parametrisation (cuda skipped visibly when absent)
and a seeded random generator."""
import os
import sys

import numpy as np
import pytest

# The reference lives beside the tests; make it importable whatever the rootdir is.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _cuda_available():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Torch device name; the cuda case is skipped (with a reason) without a GPU."""
    if request.param == "cuda":
        if not _cuda_available():
            pytest.skip("cuda: torch.cuda.is_available() is False on this machine")
        try:
            import stnls
        except ImportError:
            return request.param  # the test module itself reports the missing library
        if not stnls.cuda_available():
            pytest.skip("cuda: this build of stnls has no CUDA backend (CPU-only build)")
    return request.param


@pytest.fixture
def rng():
    """A fresh, seeded generator per test so failures reproduce."""
    return np.random.default_rng(20240611)
