"""Portable CPU numerics: the same bits from every x86-64 machine (params.yaml's ``numerics``).

On the CPU the last bits of a result depend on how many threads split each reduction and
on which kernels the libraries under torch pick for this processor: ATen's vectorised
loops (AVX2 or AVX-512), oneDNN's convolutions (per instruction set and cache size), MKL's
matrix products (per code path) and NNPACK's. Portable mode takes every one of those
choices away from the machine:

- ``threads`` threads for OpenMP and MKL, neither allowed to change it at run time;
- ATen's kernels at the AVX2 level, which every x86-64 CPU of the last decade runs;
- MKL on its COMPATIBLE code path, the one path Intel documents to give the same results
  on Intel and other CPUs (its AVX2 and AVX-512 paths are honoured on Intel CPUs only);
- oneDNN and NNPACK off: both choose their blocking and algorithms per CPU, and promise the
  same bits only run to run on one platform, so convolutions go to ATen's own kernels
  (unfold plus MKL's matrix product).

The variables must be in the environment before torch loads: OpenMP and MKL read theirs
when their libraries start, ATen its level at the first kernel call. ``stages/__init__.py``
calls ``pin_environment`` first thing in every stage process, so the pins win over whatever
the user's shell says; ``apply_torch`` then switches oneDNN and NNPACK off in torch.

``self_check`` runs a small battery of the layers the models use, forward, backward and
one Adam step, and compares its digests with ``numerics.json``, committed beside this file
from a portable run: a machine that computes other bits than the committed run says so in
one line, and the layer whose digest differs says where to look (docs/resume.md,
"Portable numerics").
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

# The committed digests of the battery, made in portable mode (``python -m gan.numerics
# --write``).
FINGERPRINT = Path(__file__).with_name("numerics.json")
KERNEL_LEVEL = "avx2"  # ATen's ATEN_CPU_CAPABILITY and oneDNN's ONEDNN_MAX_CPU_ISA below


def portable_environment(threads: int) -> dict[str, str]:
    """The variables portable mode sets, whatever the environment held before."""
    n = str(threads)
    return {
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
        "OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE",
        "ATEN_CPU_CAPABILITY": KERNEL_LEVEL,
        "MKL_CBWR": "COMPATIBLE",
        # oneDNN is off in torch (apply_torch); should any call still reach it, it runs the
        # same instruction set as ATen
        "ONEDNN_MAX_CPU_ISA": KERNEL_LEVEL.upper(),
    }


def pin_environment(portable: bool, threads: int) -> None:
    """Set portable mode's variables in this process (and every process it starts)."""
    if portable:
        os.environ.update(portable_environment(threads))


def settings(params_path: str | Path) -> tuple[bool, int]:
    """(portable, threads) of a params file's numerics section (its defaults when absent)."""
    from gan.config import NumericsConfig, from_params, read_params

    raw = read_params(params_path).get("numerics", {})
    cfg = from_params(NumericsConfig, raw, "numerics")
    return cfg.portable, cfg.threads


def option(argv: list[str], name: str, default: str | None) -> str | None:
    """The value of option ``name`` on a stage's command line, as argparse reads it; the
    stage has not parsed its arguments yet when its numerics are pinned."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def params_path(argv: list[str]) -> str:
    """The ``--params`` of a stage's command line (params.yaml without one)."""
    return option(argv, "--params", "params.yaml") or "params.yaml"


def pin_from_argv(argv: list[str]) -> None:
    """Pin the environment from the stage's params file; a bad file or value is one line
    and exit code 2, as the stages say it."""
    from gan.errors import GanError

    try:
        pin_environment(*settings(params_path(argv)))
    except GanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def apply_torch(portable: bool, threads: int) -> None:
    """The switches that live in torch itself; call once torch may load."""
    if not portable:
        return
    import torch

    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)


def _digest(*tensors: Any) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def battery() -> dict[str, str]:
    """Digests of each layer type the models and the judge use, forward and backward, of an
    Adam step and of a long reduction, on fixed inputs (float32, CPU)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(20261204)
    x = torch.randn(16, 8, 14, 14, generator=gen)
    cases = {
        "linear": (nn.Linear(392, 64), torch.randn(32, 392, generator=gen)),
        "conv2d": (nn.Conv2d(8, 16, 5, 2, 2), x),
        "conv_transpose2d": (nn.ConvTranspose2d(8, 4, 5, 2, 2, output_padding=1), x),
        "batch_norm2d": (nn.BatchNorm2d(8), x),
        "batch_norm1d": (nn.BatchNorm1d(64), torch.randn(32, 64, generator=gen)),
        "group_norm": (nn.GroupNorm(1, 8), x),
        "upsample_conv": (nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(8, 4, 3, 1, 1)),
                          x),
    }
    out = {}
    for name, (layer, inp) in cases.items():
        _init(layer, gen)
        for fmt in (torch.contiguous_format, torch.channels_last):
            if inp.dim() != 4 and fmt is torch.channels_last:
                continue
            layer = layer.to(memory_format=fmt)
            leaf = inp.clone().contiguous(memory_format=fmt).requires_grad_(True)
            y = layer(leaf)
            y.backward(torch.ones_like(y).mul_(0.5).add_(y.detach()))
            grads = [p.grad for p in layer.parameters()]
            suffix = "" if fmt is torch.contiguous_format else "/channels_last"
            out[name + suffix] = _digest(y, leaf.grad, *grads)
            layer.zero_grad(set_to_none=True)
    out.update(_optimizer_and_reductions(gen))
    return out


def _init(layer: Any, gen: Any) -> None:
    import torch

    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def _optimizer_and_reductions(gen: Any) -> dict[str, str]:
    import torch
    from torch.nn import functional as F

    weights = [torch.randn(300, 100, generator=gen).requires_grad_(True),
               torch.randn(100, generator=gen).requires_grad_(True)]
    opt = torch.optim.Adam(weights, lr=3.2e-3, betas=(0.0, 0.99))
    for _ in range(3):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(
            torch.randn(64, 300, generator=gen) @ weights[0] + weights[1],
            torch.rand(64, 100, generator=gen))
        loss.backward()
        opt.step()
    big = torch.randn(1_000_003, generator=gen)
    images = torch.rand(8, 1, 28, 28, generator=gen) * 2 - 1
    resized = F.interpolate(images, size=(64, 64), mode="bilinear", antialias=True,
                            align_corners=False)
    feats = torch.randn(500, 64, generator=gen, dtype=torch.float64)
    return {
        "adam": _digest(*weights),
        "sum": _digest(big.sum(), big.mean(), big.var()),
        "interpolate": _digest(resized),
        "cov_cdist": _digest(feats.T.cov(), torch.cdist(feats[:100], feats)),
    }


def machine(portable: bool, threads: int) -> dict[str, Any]:
    """Where and how this process computes: CPU, the kernel level ATen runs, threads, mode."""
    import torch

    return {
        **cpu(),
        "cores": os.cpu_count(),
        "aten_kernels": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "mode": "portable" if portable else "native",
        "onednn": bool(torch.backends.mkldnn.enabled),
        "mkl_path": os.environ.get("MKL_CBWR", "AUTO"),
        "torch": torch.__version__,
    }


# Instruction sets that decide which kernels a CPU gets when nothing is pinned.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")


def cpu() -> dict[str, str]:
    """The CPU as lscpu names it: model name, family and model numbers, instruction sets."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = fields.get("flags", "").split()
    return {
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "cpu_family": fields.get("cpu family", "?"),
        "cpu_model": fields.get("model", "?"),
        "isa": " ".join(f for f in ISA_FLAGS if f in flags) or platform.machine(),
    }


def committed() -> dict[str, Any]:
    """The committed fingerprint: {"made_on": machine(...), "battery": {layer: digest}}."""
    try:
        saved = json.loads(FINGERPRINT.read_text())
    except (OSError, ValueError):
        return {"made_on": {}, "battery": {}}
    return {"made_on": saved.get("made_on", {}), "battery": saved.get("battery", {})}


def differing(measured: dict[str, str], reference: dict[str, str]) -> list[str]:
    """The battery's entries whose digests differ (or that one side lacks)."""
    return sorted(k for k in measured.keys() | reference.keys()
                  if measured.get(k) != reference.get(k))


def self_check(stage: str, portable: bool, threads: int, record: Path | None) -> list[str]:
    """Run the battery, write where this stage ran (``record``) and warn in one line when
    this machine computes other bits than the committed run. Returns the differing layers."""
    if not portable:
        print(f"warning: {stage}: numerics.portable is off, so this run's last bits depend on "
              f"this machine's CPU and cores (docs/resume.md, \"Portable numerics\")",
              file=sys.stderr)
        where = machine(portable, threads)
        diff: list[str] = []
    else:
        where = machine(portable, threads)
        reference = committed()
        diff = differing(battery(), reference["battery"])
        theirs = reference["made_on"].get("threads")
        if diff and theirs is not None and theirs != threads:
            print(f"warning: {stage}: numerics.threads is {threads}, the committed run's "
                  f"{theirs}: expect other bits than the committed run", file=sys.stderr)
        elif diff:
            print(f"warning: {stage}: this machine ({where['cpu']}, {where['isa']}) computes "
                  f"other bits than the committed run ({', '.join(diff[:3])}"
                  f"{' and more' if len(diff) > 3 else ''} differ), so expect other results "
                  f"(docs/resume.md, \"Portable numerics\")", file=sys.stderr)
    where["battery"] = "not run" if not portable else ("differs" if diff else "matches")
    where["differing"] = diff
    if record is not None:
        from gan import io

        io.write_json(where, record / f"{stage}.json")
    return diff


def main(argv: list[str] | None = None) -> int:
    """``python -m gan.numerics [--write]``: print this machine's battery against the
    committed one; ``--write`` commits this machine's instead (run it in portable mode)."""
    args = sys.argv[1:] if argv is None else argv
    from gan.config import NumericsConfig

    path = params_path(args)
    threads = settings(path)[1] if Path(path).is_file() else NumericsConfig().threads
    pin_environment(True, threads)
    apply_torch(True, threads)
    measured, reference = battery(), committed()["battery"]
    if "--write" in args:
        FINGERPRINT.write_text(json.dumps(
            {"made_on": machine(True, threads), "battery": measured}, indent=1) + "\n")
        print(f"wrote {FINGERPRINT}")
        return 0
    for name in sorted(measured):
        mark = "same" if reference.get(name) == measured[name] else "DIFFERS"
        print(f"{name:32s} {measured[name]}  {mark}")
    return 1 if differing(measured, reference) else 0


if __name__ == "__main__":
    sys.exit(main())
