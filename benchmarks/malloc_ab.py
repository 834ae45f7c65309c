"""glibc's malloc at its own settings against kept freed memory: train-step time and page faults.

Every stage calls ``gan.memory.keep_freed_memory`` before it starts. The setting holds for
a whole process, so this benchmark alternates fresh processes: each pair runs one of each
(which goes first alternates too, so a slow spell of a shared machine hits both), and each
process trains params.yaml's model and train settings on data/prepared (no FID, snapshots
or checkpoints) for one warm-up window and one timed window. It prints, per pair, the ms
per step and the minor page faults per step of each, their ratio, and whether the weights
came out the same, then the median ratio.

    python -m benchmarks.malloc_ab --archs dcgan,mlp --pairs 6
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from gan import data, memory, train
from gan.config import load_section, read_params
from gan.hooks import Every

MODES = ("default", "keep")


def measure(model_cfg, train_cfg, split, window: int) -> dict:
    """Train two windows of ``window`` steps; the second's ms and page faults per step, and
    a digest of G's weights at the end."""
    marks: list[tuple[float, int]] = []

    def hook(_step, _generator) -> None:
        marks.append((time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt))

    cfg = train_cfg.__class__(**{**train_cfg.__dict__, "steps": 2 * window,
                                 "log_every": window})
    result = train.train(model_cfg, cfg, 0, split, hooks=(Every(window, hook),), progress=False)
    (t0, f0), (t1, f1) = marks
    digest = hashlib.sha256()
    for _, value in sorted(result.checkpoint["generator"].items()):
        digest.update(value.numpy().tobytes())
    return {"ms": (t1 - t0) / window * 1e3, "faults": (f1 - f0) / window,
            "digest": digest.hexdigest()[:16]}


def configs(params: dict, arch: str):
    model_cfg = load_section({"model": {**params["model"], "arch": arch,
                                        "conditional": False}}, "model")
    train_cfg = load_section({"train": {**params["train"], "device": "cpu", "eval_every": 0,
                                        "snapshot_every": 0}},
                             "train")
    return model_cfg, train_cfg


def child(args) -> None:
    if args.child == "keep" and not memory.keep_freed_memory():
        raise SystemExit("malloc_ab: keep_freed_memory did not apply here (not glibc?)")
    params = read_params(args.params)
    model_cfg, train_cfg = configs(params, args.archs)
    split = data.load_prepared(args.data, "train")
    print(json.dumps(measure(model_cfg, train_cfg, split, args.window)))


def run_child(mode: str, arch: str, args) -> dict:
    # Both children get glibc's defaults from the environment: no MALLOC_* variables.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    cmd = [sys.executable, "-m", "benchmarks.malloc_ab", "--child", mode, "--archs", arch,
           "--params", str(args.params), "--data", str(args.data),
           "--window", str(args.window)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"malloc_ab: {mode} {arch} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--archs", default="dcgan,mlp")
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--window", type=int, default=100, help="steps per window")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    print(f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; "
          f"{args.window} timed steps per process")
    print("| arch | pair | default ms | kept ms | ratio | default faults/step | "
          "kept faults/step | same weights |")
    print("|---|---|---|---|---|---|---|---|")
    for arch in args.archs.split(","):
        ratios = []
        for pair in range(args.pairs):
            order = MODES if pair % 2 == 0 else MODES[::-1]
            got = {mode: run_child(mode, arch, args) for mode in order}
            a, b = got["default"], got["keep"]
            ratios.append(b["ms"] / a["ms"])
            print(f"| {arch} | {pair + 1} | {a['ms']:.2f} | {b['ms']:.2f} | {ratios[-1]:.2f} | "
                  f"{a['faults']:,.0f} | {b['faults']:,.0f} | "
                  f"{'yes' if a['digest'] == b['digest'] else 'NO'} |", flush=True)
        print(f"| {arch} | median | | | {statistics.median(ratios):.2f} | | | |", flush=True)


if __name__ == "__main__":
    main()
