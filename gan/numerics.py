"""Portable CPU numerics: the same bits from every x86-64 machine (params.yaml's ``numerics``).

On the CPU the last bits of a result depend on how many threads split each reduction and
on which kernels the libraries under torch pick for this processor: ATen's vectorised
loops (AVX2 or AVX-512), oneDNN's convolutions (per instruction set), MKL's matrix products
(per code path), MKL's vector math (per CPU vendor and model) and NNPACK's. Portable mode
takes every one of those choices away from the machine:

- ``threads`` threads for OpenMP and MKL, neither allowed to change it at run time, and no
  variable of the environment that would change either (``OVERRIDDEN``);
- ATen's kernels at the AVX2 level, which every x86-64 CPU of the last decade runs;
- oneDNN's convolutions at the AVX2 level too, in strict float32 arithmetic: at a fixed
  thread count they give the same bits on Intel and AMD CPUs of other cache sizes
  (docs/resume.md, "Portable numerics", lists the layers checked);
- MKL on its COMPATIBLE code path, the one path Intel documents to give the same results
  on Intel and other CPUs, for matrix products and LAPACK;
- none of MKL's vector math: ATen hands it sqrt, exp, log, tanh and the like, and it gives
  other bits on Intel than on AMD whatever MKL_CBWR says, so the pipeline computes those
  in gan/mathops.py instead;
- NNPACK off.

The variables must be in the environment before torch loads: OpenMP and MKL read theirs
when their libraries start, ATen its level at the first kernel call. Every stage's first
call, ``stages.common.start``, reads its params file and calls ``pin_environment`` before
anything loads torch (stages/__init__.py), so the pins win over whatever the user's shell
says; ``apply_torch`` then sets the switches that live in torch.

``self_check`` runs a battery of every layer, elementwise function, optimizer and score the
pipeline computes and compares its digests with ``numerics.json``, committed beside this
file from a portable run: a machine that computes other bits than the committed run says so
in one line (once per run), naming the functions whose digests differ (docs/resume.md,
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

from gan.sections import from_params, read_params
from gan.sections.numerics import NumericsConfig

# The committed digests of the battery, made in portable mode (``python -m gan.numerics
# --write``).
FINGERPRINT = Path(__file__).with_name("numerics.json")
KERNEL_LEVEL = "avx2"  # ATen's ATEN_CPU_CAPABILITY and oneDNN's ONEDNN_MAX_CPU_ISA below
# Variables that would change the thread count or the kernels, which portable mode removes
# from the environment: OpenMP's thread cap, MKL's per-domain threads and instruction cap,
# oneDNN's hints (its older DNNL_ names included).
OVERRIDDEN = ("OMP_THREAD_LIMIT", "MKL_DOMAIN_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS",
              "ONEDNN_CPU_ISA_HINTS", "DNNL_CPU_ISA_HINTS", "MKL_DEBUG_CPU_TYPE")


# The thread counts and their wait policy, recorded with the rest (``machine``).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def portable_environment(threads: int) -> dict[str, str]:
    """The variables portable mode sets, whatever the environment held before."""
    n = str(threads)
    return {
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
        "OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE",
        "ATEN_CPU_CAPABILITY": KERNEL_LEVEL,
        "MKL_CBWR": "COMPATIBLE",
        "ONEDNN_MAX_CPU_ISA": KERNEL_LEVEL.upper(), "DNNL_MAX_CPU_ISA": KERNEL_LEVEL.upper(),
        # float32 stays float32: no implicit bf16 or tf32 inside oneDNN
        "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT", "DNNL_DEFAULT_FPMATH_MODE": "STRICT",
    }


def others_running(reads: int = 5, gap: float = 0.01) -> int:
    """How many other tasks want a core right now: /proc/stat's ``procs_running`` less this
    process, the median of a few reads (0 where /proc/stat cannot be read)."""
    import statistics
    import time

    counts = []
    for i in range(reads):
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            return 0
        counts += [int(line.split()[1]) for line in text.splitlines()
                   if line.startswith("procs_running ")]
        if i + 1 < reads:
            time.sleep(gap)
    return max(0, int(statistics.median(counts)) - 1) if counts else 0


def pin_environment(portable: bool, threads: int) -> None:
    """Set portable mode's variables in this process (and every process it starts). In
    either mode, when other work wants the cores as the stage starts, OpenMP's threads sleep
    when they wait instead of spinning, unless the environment says how they wait: spinning
    beside other work, they take turns with it and every parallel region waits for the
    slowest; on an idle machine spinning is faster (docs/performance.md, "Threads on a busy
    machine"). The wait changes no bits."""
    if ("OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
            and others_running() > 0):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if portable:
        for name in OVERRIDDEN:
            os.environ.pop(name, None)
        os.environ.update(portable_environment(threads))


def config(params: dict[str, Any]) -> NumericsConfig:
    """The numerics section of a params dict (its defaults when the section is absent)."""
    return from_params(NumericsConfig, params.get("numerics", {}), "numerics")


def settings(params_path: str | Path) -> tuple[bool, int]:
    """(portable, threads) of a params file's numerics section (its defaults when absent)."""
    cfg = config(read_params(params_path))
    return cfg.portable, cfg.threads


def apply_torch(portable: bool, threads: int) -> None:
    """The switches that live in torch itself; call once torch may load."""
    import torch

    from gan import mathops

    mathops.set_portable(portable)
    if not portable:
        return
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = True
    torch.backends.nnpack.set_flags(False)


def _digest(*tensors: Any) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# The battery's entries that run MKL's matrix products or LAPACK, whose bits depend on
# MKL's code path (MKL_CBWR); every other entry computes with ATen's and oneDNN's kernels
# alone (tests/test_numerics.py holds it so).
MKL_ENTRIES = frozenset({"linear", "cdist", "fid", "kid"})


def battery() -> dict[str, str]:
    """Digests of every layer, elementwise function, loss, optimizer and score the pipeline
    computes, forward and backward, on fixed inputs (CPU): an entry names the function."""
    import torch

    gen = torch.Generator().manual_seed(20261204)
    out = _layers(gen)
    out.update(_elementwise(gen))
    out.update(_optimizers(gen))
    out.update(_scores(gen))
    return out


def _init(layer: Any, gen: Any) -> None:
    import torch

    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def _fwd_bwd(layer: Any, inp: Any, fmt: Any) -> str:
    """Digest of a layer's output, its input's gradient and its parameters' gradients."""
    import torch

    layer = layer.to(memory_format=fmt) if inp.dim() == 4 else layer
    leaf = inp.clone().contiguous(memory_format=fmt).requires_grad_(True)
    y = layer(leaf)
    y.backward(torch.ones_like(y).mul_(0.5).add_(y.detach()))
    grads = [p.grad for p in layer.parameters()]
    digest = _digest(y, leaf.grad, *grads)
    layer.zero_grad(set_to_none=True)
    return digest


def _layers(gen: Any) -> dict[str, str]:
    """Each layer type of the models and the judge, at the shapes the default models run
    (oneDNN picks its implementation per shape): torch's layers alone, so that an edit of
    the project's model code leaves the committed digests as they are."""
    import torch
    from torch import nn

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen)

    x = rand(4, 8, 14, 14)
    cases = {
        "linear": (nn.Linear(392, 64), rand(32, 392)),
        "conv2d": (nn.Conv2d(8, 16, 5, 2, 2), x),
        "conv_transpose2d": (nn.ConvTranspose2d(8, 4, 5, 2, 2, output_padding=1), x),
        # dcgan's D, then G (g_channels = d_channels = 32 at 28 px)
        "conv/dcgan_d1": (nn.Conv2d(1, 32, 4, 2, 1), rand(4, 1, 28, 28)),
        "conv/dcgan_d2": (nn.Conv2d(32, 64, 4, 2, 1, bias=False), rand(4, 32, 14, 14)),
        "conv/dcgan_d_out": (nn.Conv2d(64, 1, 7, 1, 0), rand(4, 64, 7, 7)),
        "conv_transpose/dcgan_g1": (nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False),
                                    rand(4, 64, 7, 7)),
        "conv_transpose/dcgan_g_out": (nn.ConvTranspose2d(32, 1, 4, 2, 1), rand(4, 32, 14, 14)),
        # resize_conv's G block and D's first layer (5 x 5 kernels)
        "upsample_conv/resize_conv_g1": (nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 5, 1, 2, bias=False)),
            rand(4, 64, 7, 7)),
        "conv/resize_conv_d1": (nn.Conv2d(1, 32, 5, 2, 2), rand(4, 1, 28, 28)),
        "upsample_conv": (nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(8, 4, 3, 1, 1)),
                          x),
        # the judge's three 3 x 3 convolutions (classifier.width 16)
        "conv/judge1": (nn.Conv2d(1, 16, 3, 1, 1, bias=False), rand(4, 1, 28, 28)),
        "conv/judge2": (nn.Conv2d(16, 32, 3, 1, 1, bias=False), rand(4, 16, 14, 14)),
        "conv/judge3": (nn.Conv2d(32, 64, 3, 1, 1, bias=False), rand(4, 32, 7, 7)),
        "batch_norm2d": (nn.BatchNorm2d(8), x),
        "batch_norm1d": (nn.BatchNorm1d(64), rand(32, 64)),
        "group_norm": (nn.GroupNorm(1, 8), x),
        "layer_norm": (nn.LayerNorm(64), rand(32, 64)),
        "max_pool": (nn.MaxPool2d(2), x),
        "adaptive_avg_pool": (nn.AdaptiveAvgPool2d(7), x),
        "dropout": (nn.Dropout(0.25), x),
    }
    out = {}
    for name, (layer, inp) in cases.items():
        _init(layer, gen)
        for fmt in (torch.contiguous_format, torch.channels_last):
            if inp.dim() != 4 and fmt is torch.channels_last:
                continue
            suffix = "" if fmt is torch.contiguous_format else "/channels_last"
            torch.manual_seed(7)  # dropout's mask
            out[name + suffix] = _fwd_bwd(layer, inp, fmt)
    return out


def _elementwise(gen: Any) -> dict[str, str]:
    """Each elementwise function and loss the pipeline computes, with its gradient."""
    import torch
    from torch.nn import functional as F

    from gan import mathops

    x = torch.randn(4099, generator=gen)
    target = torch.rand(4099, generator=gen)
    functions = {
        "tanh": mathops.tanh,
        "sigmoid": torch.sigmoid,
        "softplus": F.softplus,
        "logsigmoid": F.logsigmoid,
        "leaky_relu": lambda v: F.leaky_relu(v, 0.2),
        "relu": F.relu,
        "log_softmax": lambda v: v.view(-1, 1).expand(-1, 10).mul(
            torch.linspace(-1, 1, 10)).log_softmax(dim=1),
        "bce_with_logits": lambda v: F.binary_cross_entropy_with_logits(v, target),
        "mse": lambda v: F.mse_loss(v, target),
        "cross_entropy": lambda v: F.cross_entropy(v[:4090].view(-1, 10),
                                                   torch.arange(409) % 10),
        "norm": lambda v: v[:4096].view(64, 64).norm(2, dim=1),
        "lerp": lambda v: torch.lerp(v, target, 0.001),
    }
    out = {}
    for name, fn in functions.items():
        leaf = x.clone().requires_grad_(True)
        y = fn(leaf)
        y.backward(torch.ones_like(y))
        out[name] = _digest(y, leaf.grad)
    positive = x.abs().double() + 0.01
    out["sqrt"] = _digest(mathops.sqrt(positive), mathops.sqrt(positive.float()))
    out["log_exp"] = _digest(mathops.log(positive[:64]), mathops.exp(x[:64]))
    out["acos_sin"] = _digest(mathops.acos(x[:64].clamp(-1, 1)), mathops.sin(x[:64]))
    images = torch.rand(8, 1, 28, 28, generator=gen) * 2 - 1
    out["interpolate"] = _digest(torch.nn.functional.interpolate(
        images, size=(64, 64), mode="bilinear", antialias=True, align_corners=False))
    big = torch.randn(1_000_003, generator=gen)
    out["sum"] = _digest(big.sum(), big.mean(), big.var())
    return out


def _optimizers(gen: Any) -> dict[str, str]:
    """Three steps of each optimizer the pipeline runs, as gan/optim.py and the judge make
    them (fused Adam and SGD; RMSprop with mathops' root), on fixed gradients; the EMA."""
    import torch

    from gan import mathops

    out = {}
    start = torch.randn(300, 100, generator=gen)
    grads = [torch.randn(300, 100, generator=gen) for _ in range(3)]
    makers = {
        "adam": lambda w: torch.optim.Adam(w, lr=3.2e-3, betas=(0.5, 0.99), fused=True),
        "sgd": lambda w: torch.optim.SGD(w, lr=3.2e-3, momentum=0.5, fused=True),
        "rmsprop": lambda w: torch.optim.RMSprop(w, lr=3.2e-3, foreach=True),
    }
    for name, make in makers.items():
        w = start.clone().requires_grad_(True)
        opt = make([w])
        for g in grads:
            w.grad = g.clone()
            with mathops.RootOutsideMKL():
                opt.step()
        out[f"optimizer/{name}"] = _digest(w)
    w = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=3e-3, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=4, pct_start=0.15)
    for g in grads:
        w.grad = g.clone()
        opt.step()
        schedule.step()
    out["optimizer/adam_one_cycle"] = _digest(w)
    ema = start.clone()
    for g in grads:
        ema.lerp_(g, 1 - 0.999)
    out["ema"] = _digest(ema)
    return out


def _scores(gen: Any) -> dict[str, str]:
    """What evaluate computes of feature sets: distances, the inception score's parts, and
    the operations of torchmetrics' FID (covariances, eigenvalues of their product, complex
    square roots) and KID (a cubic polynomial kernel), without torchmetrics' seconds of
    import in every stage."""
    import torch

    from gan import mathops

    real = torch.randn(300, 16, generator=gen)
    fake = torch.randn(200, 16, generator=gen) * 1.1 + 0.1
    logits = torch.randn(200, 10, generator=gen, dtype=torch.float64)
    p = logits.softmax(dim=1)
    a, b = real.double().T.cov(), fake.double().T.cov()
    kernel = (fake.double() @ real.double().T / 16 + 1) ** 3
    return {
        "cdist": _digest(mathops.cdist(fake, real)),
        "inception_score": _digest(p, logits.log_softmax(dim=1), mathops.log(p.mean(dim=0))),
        "fid": _digest(a, b, torch.linalg.eigvals(a @ b).sqrt().real.sum()),
        "kid": _digest(kernel.sum()),
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
        # what of the environment could still change the threads or kernels (native mode;
        # portable mode sets or removes each of these)
        "environment": {name: os.environ[name] for name in (*OVERRIDDEN, *THREAD_VARIABLES)
                        if name in os.environ},
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


WRITE_HINT = "python -m gan.numerics --write"


def committed(path: Path = FINGERPRINT) -> dict[str, Any]:
    """The committed fingerprint: {"made_on": machine(...), "battery": {entry: digest}}.

    A missing, unreadable or misshapen file is one GanError naming it and the command that
    writes it, never a claim about this machine."""
    from gan.errors import GanError

    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise GanError(f"{path}: missing; it holds the committed run's numerics digests "
                       f"(restore it with git, or make this machine's: {WRITE_HINT})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not JSON"
        raise GanError(f"{path}: unreadable ({reason}); restore it with git, or make this "
                       f"machine's: {WRITE_HINT}") from None
    made_on = saved.get("made_on") if isinstance(saved, dict) else None
    entries = saved.get("battery") if isinstance(saved, dict) else None
    if not (isinstance(made_on, dict) and isinstance(entries, dict) and entries
            and all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items())):
        raise GanError(f"{path}: not a numerics fingerprint (expected an object with "
                       f"\"made_on\" and a non-empty \"battery\" of entry: digest); restore "
                       f"it with git, or make this machine's: {WRITE_HINT}")
    return {"made_on": made_on, "battery": entries}


def differing(measured: dict[str, str], reference: dict[str, str]) -> list[str]:
    """The battery's entries whose digests differ (or that one side lacks)."""
    return sorted(k for k in measured.keys() | reference.keys()
                  if measured.get(k) != reference.get(k))


def _said_in_this_run(record: Path | None, run: list[int] | None,
                      where: dict[str, Any]) -> bool:
    """Whether another stage of the same run (the same ``run``, a dvc repro's process) has
    already recorded the same verdict in ``record``: its warning was said once."""
    if record is None or run is None or not record.is_dir():
        return False
    for other in record.glob("*.json"):
        try:
            seen = json.loads(other.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if (isinstance(seen, dict) and seen.get("run") == run
                and all(seen.get(k) == where[k] for k in ("mode", "threads", "differing"))):
            return True
    return False


def self_check(stage: str, portable: bool, threads: int, record: Path | None,
               run: list[int] | None = None) -> list[str]:
    """Run the battery, write where this stage ran (``record``) and warn in one line when
    this machine computes other bits than the committed run: once per run, the first
    computing stage saying it and the rest only recording it (``run`` names the run, e.g.
    the dvc process the stages live for). Returns the differing entries."""
    where = machine(portable, threads)
    if not portable:
        diff: list[str] = []
        line = (f"warning: {stage}: numerics.portable is off, so this run's last bits depend "
                f"on this machine's CPU and cores (docs/resume.md, \"Portable numerics\")")
    else:
        reference = committed()
        diff = differing(battery(), reference["battery"])
        theirs = reference["made_on"].get("threads")
        line = None
        if diff and theirs is not None and theirs != threads:
            line = (f"warning: {stage}: numerics.threads is {threads}, the committed run's "
                    f"{theirs}: expect other bits than the committed run")
        elif diff:
            line = (f"warning: {stage}: this machine ({where['cpu']}, {where['isa']}) computes "
                    f"other bits than the committed run ({', '.join(diff[:3])}"
                    f"{' and more' if len(diff) > 3 else ''} differ), so expect other results "
                    f"(docs/resume.md, \"Portable numerics\")")
    where["battery"] = "not run" if not portable else ("differs" if diff else "matches")
    where["differing"] = diff
    where["run"] = run
    if line is not None and not _said_in_this_run(record, run, where):
        print(line, file=sys.stderr)
    if record is not None:
        from gan import io

        io.write_json(where, record / f"{stage}.json")
    return diff


# ``--recommit``: every digest of the numbers, re-made in order after a deliberate change of
# them (a pin, a kernel, a package version): (what it writes, its command, as a user types it).
RECOMMIT = (
    ("the battery's digests -> gan/numerics.json", "python -m gan.numerics --write"),
    ("the golden run's digests -> tests/golden_numerics.json",
     "python tests/test_numerics.py --write"),
    ("the committed run, every stage again -> its outputs and dvc.lock", "dvc repro --force"),
)
ROOT = Path(__file__).resolve().parents[1]  # the project's folder


def recommit(root: Path = ROOT) -> int:
    """Run RECOMMIT's commands in ``root``, one line before each; stop at the first that
    fails. Each runs in a process of its own, so the battery is pinned before torch loads."""
    import subprocess

    for i, (what, command) in enumerate(RECOMMIT, 1):
        print(f"recommit {i}/{len(RECOMMIT)}: {what} ({command})", flush=True)
        program, *rest = command.split()
        argv = [sys.executable, *rest] if program == "python" else \
            [sys.executable, "-m", program, *rest]  # dvc, from this Python's environment
        code = subprocess.run(argv, cwd=root).returncode
        if code != 0:
            print(f"error: recommit {i}/{len(RECOMMIT)}: {command} exited with code {code}; "
                  f"what the steps before it wrote stays, the steps after it did not run",
                  file=sys.stderr)
            return 2
    print("recommit: done; commit the two digest files, dvc.lock and the metrics together, "
          "saying why the numbers moved")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gan.numerics [--params P] [--write | --json | --recommit]``: print this
    machine's battery against the committed one; ``--write`` commits this machine's instead
    (run it in portable mode); ``--json`` prints the digests as JSON; ``--recommit`` re-makes
    every digest of the numbers after a deliberate change of them (RECOMMIT)."""
    import argparse

    from gan.errors import GanError

    cli = argparse.ArgumentParser(prog="python -m gan.numerics", description=main.__doc__)
    cli.add_argument("--params", type=Path, default=Path("params.yaml"),
                     help="the params file whose numerics.threads the battery runs with "
                          "(its default when the file is absent)")
    what = cli.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help="commit this machine's digests")
    what.add_argument("--json", action="store_true", help="print the digests as JSON")
    what.add_argument("--recommit", action="store_true",
                      help="re-make the battery's, the golden run's and the committed run's "
                           "digests, in that order")
    args = cli.parse_args(argv)
    if args.recommit:
        return recommit()
    try:
        threads = settings(args.params)[1] if args.params.is_file() else \
            NumericsConfig().threads
    except GanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pin_environment(True, threads)
    apply_torch(True, threads)
    measured = battery()
    if args.json:
        print(json.dumps(measured, indent=1, sort_keys=True))
        return 0
    if args.write:
        FINGERPRINT.write_text(json.dumps(
            {"made_on": machine(True, threads), "battery": measured}, indent=1) + "\n")
        print(f"wrote {FINGERPRINT}")
        return 0
    try:
        reference = committed()["battery"]
    except GanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in sorted(measured):
        mark = "same" if reference.get(name) == measured[name] else "DIFFERS"
        print(f"{name:32s} {measured[name]}  {mark}")
    return 1 if differing(measured, reference) else 0


if __name__ == "__main__":
    sys.exit(main())
