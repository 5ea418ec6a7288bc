"""How the torch ops are registered and called: a torch.library custom op per function (fake
implementation, autograd), so that torch.compile and torch.export see it, plus a direct path
for plain eager calls.

Through the dispatcher, a custom op written in Python pays its hops (the custom op wrapper,
the autograd kernel, a redispatch, the alias checks) on every call: 0.1-0.3 ms of host time
per search call on the GPU machine (bench/torch_call_breakdown.py), as much as the kernels
of a small search, and the GPU waits for it. `Op.__call__` runs the implementation straight
instead, with an autograd.Function for the gradient, whenever only plain eager tensors are
involved; anything torch must see goes through the custom op: torch.compile and
torch.export tracing, torch.jit.trace, functorch transforms (vmap, grad), torch function
and dispatch modes (FakeTensor, a default-device context) and tensor subclasses other than
nn.Parameter. Both paths run the same implementation, setup_context and backward functions.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


_PLAIN = (Tensor, torch.nn.Parameter)

# torch's own probes of what would see a call. A torch without one of them (older or newer
# than the ones tested) gets the custom op on every call: slower, never wrong.
_PROBES = tuple(getattr(torch._C, name, None) for name in (
    "_len_torch_function_stack", "_len_torch_dispatch_stack", "_are_functorch_transforms_active",
    "_get_tracing_state"))
_HAVE_PROBES = all(_PROBES) and hasattr(torch, "compiler") and hasattr(torch.compiler, "is_compiling")
# What torch.autograd.Function.apply does outside functorch transforms (which _direct rules
# out): each tensor argument unwrapped if it is a dead functorch wrapper, then the C++ apply.
_UNWRAP_IF_DEAD = getattr(getattr(torch._C, "_functorch", None), "unwrap_if_dead", None)


def _direct(args):
    """args, with dead functorch wrappers unwrapped as torch's Function.apply would, when
    nothing but torch's eager kernels would see this call; else None."""
    if not _HAVE_PROBES or _UNWRAP_IF_DEAD is None or torch.compiler.is_compiling():
        return None
    function_modes, dispatch_modes, functorch, tracing = _PROBES
    if function_modes() or dispatch_modes() or functorch() or tracing() is not None:
        return None
    out = []
    for a in args:
        if isinstance(a, Tensor):
            if type(a) not in _PLAIN:  # other subclasses, FakeTensor
                return None
            a = _UNWRAP_IF_DEAD(a)
        out.append(a)
    return out


class _EagerFunction(torch.autograd.Function):
    """An op's autograd on the direct path: apply(*args, (out,), op), where out is
    what op.impl(*args) returned. The implementation runs before apply, so that its kernels
    are launched before torch's apply runs (its argument checks, the node, the outputs'
    history), which the GPU would otherwise wait for on a call made right after a
    synchronisation: with the search's one device query and new_empty outputs, S2's forward
    per call through torch went 0.329 -> 0.314 ms on an H200 (bench/NOTES.md). Every impl
    only allocates its outputs and hands the inputs to the binding detached, so running it
    with grad mode on records nothing. out and op come last so that ctx.needs_input_grad[i] is
    the op's argument i, as under register_autograd. out comes boxed in a 1-tuple: apply
    takes a tensor argument as an input, a tuple as a plain object."""

    @staticmethod
    def forward(ctx, *args_boxed_op):
        *args, boxed, op = args_boxed_op
        out = boxed[0]
        ctx.stnls_op = op
        op.setup_context(ctx, tuple(args), out)
        return out

    @staticmethod
    def backward(ctx, *grads):
        return tuple(ctx.stnls_op.backward(ctx, *grads)) + (None, None)


# The C++ apply of _EagerFunction: torch.autograd.Function.apply without its Python layer
# (default-argument binding for setup_context-style functions, the functorch branch and the
# dead-wrapper unwrapping, which _direct does), a few microseconds of every small call's
# host time. A torch without it takes the public apply.
_EAGER_APPLY = getattr(super(torch.autograd.Function, _EagerFunction), "apply", _EagerFunction.apply)


class Op:
    """A torch op: `torch.library.custom_op(name, impl)` with `fake` and, when `backward` is
    given, `register_autograd(backward, setup_context=setup_context)`; called like impl.
    `.op` is the custom op itself, `.impl` the Python implementation."""

    def __init__(self, name: str, impl: Callable, fake: Callable, setup_context: Optional[Callable] = None,
                 backward: Optional[Callable] = None):
        self.impl, self.setup_context, self.backward = impl, setup_context, backward
        self.op = torch.library.custom_op(name, impl, mutates_args=())
        self.op.register_fake(fake)
        if backward is not None:
            self.op.register_autograd(backward, setup_context=setup_context)

    def __call__(self, *args):
        direct = _direct(args)
        if direct is None:
            return self.op(*args)
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in direct):
            if self.backward is None:
                return self.op(*args)  # torch's own handling of an op without a gradient
            return _EAGER_APPLY(*direct, (self.impl(*direct),), self)
        return self.impl(*direct)
