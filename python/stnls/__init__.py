"""stnls: differentiable space-time non-local search on video.

`stnls.search` works on NumPy (or any DLPack) arrays without torch; the torch adapter
(autograd, `NonLocalSearch` module) loads only when torch tensors or modules are used.
"""
from . import search

__version__ = "0.1.0"


def cuda_available() -> bool:
    """True when this build of stnls contains the CUDA backend."""
    from ._C import cuda_available as _cuda_available

    return _cuda_available()


__all__ = ["search", "cuda_available", "__version__"]
