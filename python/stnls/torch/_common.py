"""Helpers shared by the torch ops: the caller's CUDA stream, tensor checks and the
hand-over of tensors to the binding."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack


# torch's own getters of the current device and of a device's current stream handle (what
# torch.cuda.current_device() and current_stream().cuda_stream return, without the Python
# layers around them: a Stream object per call, lazy-init checks). A torch without them
# takes the public functions.
_GET_DEVICE = getattr(torch._C, "_cuda_getDevice", None)
_RAW_STREAM = getattr(torch._C, "_cuda_getCurrentRawStream", None)
_NO_SWITCH = contextlib.nullcontext()


def _current_device() -> int:
    return _GET_DEVICE() if _GET_DEVICE is not None else torch.cuda.current_device()


def stream(t: Tensor):
    """The current torch stream of t's device (None on the CPU)."""
    if not t.is_cuda:
        return None
    if _RAW_STREAM is not None:
        return _RAW_STREAM(t.get_device())
    return torch.cuda.current_stream(t.device).cuda_stream


def dlpack(t, current: Optional[int] = None):
    """t as the binding takes it: a DLPack capsule from torch's C++ exporter where that is
    what t.__dlpack__ would hand over, else t itself (detached if it requires grad; None
    stays None). `current`: the current CUDA device's index where the caller knows it
    (inside on_device(x), x.get_device(); -1 for a CPU x, so that a CUDA tensor passed
    with it takes __dlpack__ and the binding names the mismatch), which saves asking CUDA
    for it per tensor.

    For a tensor the binding calls t.__dlpack_device__() and t.__dlpack__(), Python
    functions that cost about 5 us per tensor on the CPU and more on CUDA (an ExternalStream
    and a stream comparison each), several tensors per op; a capsule it borrows as it is
    (and it may serve several calls). __dlpack__ only refuses what the test below sends its
    way, so errors stay its own; it would also refuse a tensor that requires grad, which the
    C++ exporter takes as it is (the binding only reads the inputs, and the ops' outputs do
    not require grad), so no detached view is made per tensor. Its stream handshake is not
    needed: the ops run inside on_device(t) on the current stream of that device, the stream
    __dlpack__ would order the tensor against, so it never waits there; only the binding's
    shape and workspace queries, which ask for no stream, made the legacy default stream
    wait for the current one, for memory they do not touch.
    """
    if type(t) is Tensor and t.layout is torch.strided and not t.is_conj() and (
            t.is_cpu or (t.is_cuda and t.get_device() == (_current_device() if current is None else current))):
        return to_dlpack(t)
    return t.detach() if isinstance(t, Tensor) and t.requires_grad else t


def own(t):
    """dlpack(t) for a tensor the op itself just allocated inside on_device(its input): plain,
    strided, on the current device (None stays None)."""
    return None if t is None else to_dlpack(t)


def check_tensor(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")


def workspace(nbytes: int, like: Tensor):
    """Scratch from torch's caching allocator on like's device (None when not needed)."""
    return torch.empty(nbytes, dtype=torch.uint8, device=like.device) if nbytes else None


def on_device(t: Tensor):
    """Makes t's GPU the current device while the binding runs: torch hands a CUDA tensor
    over through DLPack only from its own device (the core also switches to it). Nothing to
    switch (the usual case) costs no context object."""
    if t.is_cuda and t.get_device() != _current_device():
        return torch.cuda.device(t.device)
    return _NO_SWITCH
