"""Elementwise math with the same bits on every x86-64 CPU, for portable numerics.

On the CPU, ATen hands sqrt, exp, log, tanh, sin, cos, acos and a few more (``VECTOR_MATH``)
of float and double tensors to MKL's vector math functions, and those give other last bits
on an Intel CPU than on an AMD one whatever MKL_CBWR says (docs/resume.md, "Portable
numerics"). In portable mode (``set_portable(True)``, called by gan.numerics.apply_torch)
the pipeline computes them here instead, from operations whose bits ATen's pinned kernels
or IEEE arithmetic decide alone:

- ``tanh(x)`` as ``2 sigmoid(2x) - 1``: ATen's own vectorised sigmoid and three exact-rule
  operations (the generators' last layer, ``Tanh``);
- ``sqrt`` of a tensor without gradient by NumPy, whose square root is the IEEE one,
  correctly rounded on every CPU; ``RootOutsideMKL`` routes torch's own sqrt calls (an
  optimizer's) there;
- ``cdist`` from one matrix product (MKL's COMPATIBLE path agrees across vendors) and that
  square root;
- ``log``, ``exp``, ``acos`` and ``sin`` of the few values that need them (the inception
  score's class marginal, the blur kernel of evaluate's junk, the latent walk's angles), by
  Python's math module, element by element.

Native mode calls torch's own functions, its fastest. ``watch`` lists the vector-math
operations a piece of code reaches; the tests run the pipeline's parts under it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

_portable = False

# ATen's operations that reach MKL's vector math on float and double CPU tensors: the
# functions of ATen/cpu/vml.h that torch 2.14 implements with MKL, and the operations whose
# kernels call one of them inside (cdist's square root, logsumexp's exp and log).
VECTOR_MATH = frozenset({
    "acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2",
    "sin", "sqrt", "tan", "tanh", "trunc", "cdist", "_cdist_forward", "_euclidean_dist",
    "logsumexp",
})


def set_portable(on: bool) -> None:
    """Compute ``VECTOR_MATH``'s functions of this module without MKL (True) or with torch."""
    global _portable
    _portable = bool(on)


def portable() -> bool:
    return _portable


def _here(x: torch.Tensor) -> bool:
    """Whether x's function would reach MKL: portable mode and a CPU tensor."""
    return _portable and x.device.type == "cpu"


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh, differentiable; in portable mode 2 sigmoid(2x) - 1 (within 2e-7 of it)."""
    if _here(x):
        return torch.sigmoid(x * 2).mul(2).sub(1)
    return torch.tanh(x)


class Tanh(nn.Module):
    """nn.Tanh through ``tanh``: the generators' output layer, in [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh(x)


def _numpy_sqrt(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.sqrt(x.detach().numpy()))


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Square root of a tensor that needs no gradient; portable: IEEE's, by NumPy."""
    if _here(x) and x.is_floating_point():
        return _numpy_sqrt(x)
    return torch.sqrt(x)


def cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (M, N) between the rows of a (M, F) and b (N, F), as torch.cdist's
    matrix-product path computes them: |a|^2 + |b|^2 - 2 a.b, clamped at 0, square-rooted."""
    squared = torch.addmm((b * b).sum(dim=1).unsqueeze(0), a, b.T, alpha=-2)
    return sqrt(squared.add_((a * a).sum(dim=1, keepdim=True)).clamp_min_(0))


def _per_element(fn: Callable[[float], float], native: Callable[[torch.Tensor], torch.Tensor],
                 x: torch.Tensor) -> torch.Tensor:
    if not _here(x):
        return native(x)
    values = [fn(v) for v in x.detach().double().flatten().tolist()]
    return torch.tensor(values, dtype=torch.float64).reshape(x.shape).to(x.dtype)


def log(x: torch.Tensor) -> torch.Tensor:
    """Natural log of a few values (no gradient); portable: Python's, element by element."""
    return _per_element(lambda v: math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan),
                        torch.log, x)


def exp(x: torch.Tensor) -> torch.Tensor:
    """exp of a few values (no gradient); portable: Python's, element by element."""
    return _per_element(math.exp, torch.exp, x)


def acos(x: torch.Tensor) -> torch.Tensor:
    """acos of a few values in [-1, 1] (no gradient); portable: Python's, element by element."""
    return _per_element(math.acos, torch.acos, x)


def sin(x: torch.Tensor) -> torch.Tensor:
    """sin of a few values (no gradient); portable: Python's, element by element."""
    return _per_element(math.sin, torch.sin, x)


def _name(func) -> str:
    """sqrt for aten.sqrt.default, aten.sqrt_.default and aten._foreach_sqrt_.default."""
    return func.overloadpacket.__name__.removeprefix("_foreach_").rstrip("_")


def _float_cpu(args, kwargs) -> bool:
    """Whether any tensor argument (or tensor in a list argument) is a float CPU tensor."""
    for arg in (*args, *kwargs.values()):
        for t in arg if isinstance(arg, list | tuple) else (arg,):
            if (isinstance(t, torch.Tensor) and t.device.type == "cpu"
                    and t.dtype in (torch.float32, torch.float64)):
                return True
    return False


def reaches_mkl(func, args, kwargs) -> bool:
    """Whether this ATen call computes one of MKL's vector math functions."""
    name = _name(func)
    if name == "pow" and len(args) > 1 and not isinstance(args[1], torch.Tensor):
        name = "sqrt" if args[1] == 0.5 else name  # pow(x, 0.5) is computed as sqrt(x)
    return name in VECTOR_MATH and _float_cpu(args, kwargs)


class _Watch(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if reaches_mkl(func, args, kwargs):
            self.seen.add(str(func))
        return func(*args, **kwargs)


@contextmanager
def watch() -> Iterator[set[str]]:
    """``with watch() as seen:`` collects the names of the ATen calls (forward and backward)
    that reach MKL's vector math inside the block."""
    mode = _Watch()
    with mode:
        yield mode.seen


class RootOutsideMKL(TorchDispatchMode):
    """Within it, torch's square roots of CPU float tensors are NumPy's (``sqrt``): for
    code that calls torch.sqrt itself, such as an optimizer's step. Nothing else changes."""

    ROOTS = frozenset({"sqrt"})

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _name(func) in self.ROOTS and not kwargs and len(args) == 1:
            x = args[0]
            if isinstance(x, list):  # _foreach_sqrt(_)
                roots = [_numpy_sqrt(t) for t in x]
                if func.overloadpacket.__name__.endswith("_"):
                    for t, r in zip(x, roots, strict=True):
                        t.copy_(r)
                    return None
                return roots
            if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
                root = _numpy_sqrt(x)
                if func.overloadpacket.__name__.endswith("_"):
                    return x.copy_(root)
                return root
        return func(*args, **kwargs)
