"""Where and how a run computes: device, precision, memory format, processes, RNG seeding."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import distributed as dist

from gan.errors import GanError

# train.precision -> autocast dtype (None: no autocast).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise GanError(f"train.device: got {name!r}, but no {name} device is available "
                       f"(use auto or cpu)")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA (where supported), fp32 elsewhere; refuse what can't run."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    can = {"cuda": ("fp32", "fp16") + (("bf16",) if cuda_bf16 else ()),
           "cpu": ("fp32", "bf16", "fp16")}.get(device.type, ("fp32",))
    if name not in can:
        raise GanError(f"train.precision: {name} is not available on this {device.type} "
                       f"device (allowed here: auto, {', '.join(can)})")
    return name


def resolve_memory_format(name: str, device: torch.device, arch: str) -> torch.memory_format:
    """``auto``: channels_last for convolutional models on CUDA and on the CPU, where
    oneDNN's convolutions make the default dcgan step 1.19x as fast as contiguous
    (docs/performance.md, "Where the train step's time goes"); contiguous for the mlp and
    on other devices."""
    if name == "auto":
        name = "channels_last" if device.type in ("cuda", "cpu") and arch != "mlp" \
            else "contiguous"
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def world_info() -> tuple[int, int]:
    """(rank, world size) of the process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def process_group(device_name: str) -> Iterator[int]:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL on CUDA, else gloo).

    Yields this process's rank (0 without torchrun).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0
        return
    cuda = select_device(device_name).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """Ask CUDA for deterministic kernels (cuBLAS needs its workspace fixed first)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not on
    torch.backends.cudnn.deterministic = on
    torch.use_deterministic_algorithms(on)


def rng_state(noise_gen: torch.Generator) -> dict[str, Any]:
    """Every RNG a run draws from: Python, NumPy, torch's CPU and CUDA ones, and its noise.

    Plain tuples, lists and tensors only, so that a saved state loads with
    ``torch.load(weights_only=True)``: NumPy's key array is kept as a list of ints.
    """
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "noise": noise_gen.get_state(),
    }


def set_rng_state(state: dict[str, Any], noise_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    noise_gen.set_state(state["noise"])


def cuda_devices(device: torch.device) -> list[int]:
    """The CUDA device indices ``torch.random.fork_rng`` must save for ``device``."""
    return [device.index or 0] if device.type == "cuda" else []
