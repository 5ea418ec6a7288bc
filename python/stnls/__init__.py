"""stnls: differentiable space-time non-local search on video.

`stnls.search` works on NumPy (or any DLPack) arrays without torch; the torch adapter
(autograd, `NonLocalSearch` module) loads only when torch tensors or modules are used.
"""
from . import agg, search, tile

__version__ = "0.1.0"


def cuda_available() -> bool:
    """True when this build of stnls contains the CUDA backend."""
    from ._C import cuda_available as _cuda_available

    return _cuda_available()


def __getattr__(name):
    # stnls.nn holds torch modules: it loads torch, so only on first use.
    if name == "nn":
        import importlib

        return importlib.import_module(".nn", __name__)
    raise AttributeError(f"module 'stnls' has no attribute {name!r}")


__all__ = ["search", "tile", "agg", "nn", "cuda_available", "__version__"]
