"""Where the train step's time goes: torch.profiler over the real training loop.

``gan.train.train`` marks each part of its step (``gan.step.phase``): drawing the batch and
noise, G's forward, D's forward and loss, D's backward and optimizer, D's scoring of the
fakes for G's loss, G's backward and optimizer. This script trains with the params.yaml
settings of each architecture, starts the profiler from a periodic hook after a warm-up,
stops it ``--steps`` steps later, and prints per phase the milliseconds per step and the
share of the step, then the heaviest operators (self time, summed over all phases) with
the memory they allocate per step.

    python -m benchmarks.profile_step --archs mlp,dcgan --batch-size 128
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from torch.profiler import ProfilerActivity, profile

from gan import data, memory, runtime, train
from gan.config import load_section, read_params
from gan.hooks import Every

PHASES = ("data", "g_forward", "d_forward", "d_penalty", "d_backward", "d_optimizer",
          "g_through_d", "g_backward", "g_optimizer")


def profiled_run(model_cfg, train_cfg, split, warmup: int, steps: int,
                 device: torch.device) -> tuple[profile, float]:
    """Train ``warmup + steps`` steps, profiling the last ``steps``; (profiler, wall s/step)."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities, profile_memory=True)
    stamps: dict[int, float] = {}

    def hook(step: int, _generator) -> None:  # called every ``steps`` steps
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps[step] = time.perf_counter()
        if step == warmup:
            prof.start()
        elif step == warmup + steps:
            prof.stop()

    cfg = train_cfg.__class__(**{**train_cfg.__dict__, "steps": warmup + steps,
                                 "log_every": warmup + steps, "ema_decay": None,
                                 "eval_every": 0, "snapshot_every": 0})
    train.train(model_cfg, cfg, 0, split, hooks=(Every(steps, hook),), progress=False)
    return prof, (stamps[warmup + steps] - stamps[warmup]) / steps


def tables(prof: profile, steps: int, wall: float, top: int) -> tuple[list[str], list[str]]:
    events = {e.key: e for e in prof.key_averages()}
    rows = ["| phase | ms per step | share of step |", "|---|---|---|"]
    covered = 0.0
    for name in PHASES:
        if name in events:
            ms = events[name].cpu_time_total / steps / 1e3
            covered += ms
            rows.append(f"| {name} | {ms:.2f} | {ms / (wall * 1e3):.0%} |")
    rest = wall * 1e3 - covered
    rows.append(f"| rest of the loop (logging sums, hooks, scheduler) | {rest:.2f} | "
                f"{rest / (wall * 1e3):.0%} |")
    rows.append(f"| step (wall, profiler on) | {wall * 1e3:.2f} | 100% |")
    ops = sorted((e for e in prof.key_averages() if e.key not in PHASES
                  and not e.key.startswith(("ProfilerStep", "Optimizer.zero_grad"))),
                 key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    op_rows = ["| operator | calls per step | self ms per step | MB allocated per step |",
               "|---|---|---|---|"]
    for e in ops:
        op_rows.append(f"| {e.key} | {e.count / steps:.0f} | "
                       f"{e.self_cpu_time_total / steps / 1e3:.2f} | "
                       f"{max(e.cpu_memory_usage, 0) / steps / 2**20:.1f} |")
    return rows, op_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--archs", default="mlp,dcgan")
    p.add_argument("--batch-size", type=int, default=None, help="default: params.yaml's")
    p.add_argument("--warmup", type=int, default=20, help="steps before the profiler starts")
    p.add_argument("--steps", type=int, default=20, help="profiled steps")
    p.add_argument("--top", type=int, default=12, help="operators listed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train key for the run (e.g. --set reuse_fakes=false)")
    args = p.parse_args()
    memory.keep_freed_memory()  # as every stage does
    if args.warmup % args.steps:
        raise SystemExit("--warmup must be a multiple of --steps")

    params = read_params(args.params)
    device = runtime.select_device(args.device)
    split = data.load_prepared(args.data, "train")
    for arch in args.archs.split(","):
        model_cfg = load_section({"model": {**params["model"], "arch": arch,
                                            "conditional": False}}, "model")
        train_raw = {**params["train"], "device": args.device}
        if args.batch_size:
            train_raw["batch_size"] = args.batch_size
        for item in args.set:
            key, _, value = item.partition("=")
            train_raw[key] = yaml.safe_load(value)
        train_cfg = load_section({"train": train_raw}, "train")
        prof, wall = profiled_run(model_cfg, train_cfg, split, args.warmup, args.steps, device)
        rows, op_rows = tables(prof, args.steps, wall, args.top)
        where = train.place(model_cfg, train_cfg)
        print(f"\n{arch}, batch {train_cfg.batch_size}, {device} "
              f"({torch.get_num_threads()} threads), {where.precision}, "
              f"{str(where.memory_format).removeprefix('torch.')}, reuse_fakes "
              f"{train_cfg.reuse_fakes}; torch {torch.__version__}")
        print("\n".join(rows))
        print()
        print("\n".join(op_rows), flush=True)


if __name__ == "__main__":
    main()
