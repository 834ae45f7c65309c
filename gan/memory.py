"""How the process's C allocator treats freed memory; torch-free, so every stage can call it."""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's mallopt() parameters (malloc.h) and the largest mmap threshold it takes on 64-bit.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks for reuse instead of returning them to the OS.

    CPU tensors come from malloc. By default glibc serves large blocks with fresh mmap'd
    pages and trims the top of its heap when enough is free, so a training step that frees
    and re-allocates the same few-MB activations takes thousands of page faults, each
    zeroing a page (about 2,500 per DCGAN step at batch 64 on this project's CPU). Pinning
    the mmap threshold at glibc's 64-bit maximum and never trimming below 1 GiB keeps those
    blocks in the heap for the next step: memory stays at the step's peak, and only the
    addresses change, never the numbers. Returns whether it was applied: not off glibc, and
    not when the user sets either threshold through glibc's environment variables or tunables.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in _MALLOC_ENV)
            or "glibc.malloc.mmap_threshold" in tunables
            or "glibc.malloc.trim_threshold" in tunables):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
