"""Helpers shared by the torch ops: the caller's CUDA stream and tensor checks."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def stream(t: Tensor):
    """The current torch stream of t's device (None on the CPU)."""
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else None


def check_tensor(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")


def workspace(nbytes: int, like: Tensor):
    """Scratch from torch's caching allocator on like's device (None when not needed)."""
    return torch.empty(nbytes, dtype=torch.uint8, device=like.device) if nbytes else None


def on_device(t: Tensor):
    """Makes t's GPU the current device while the binding runs: torch hands a CUDA tensor
    over through DLPack only from its own device (the core also switches to it)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
