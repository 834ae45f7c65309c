"""What portable numerics cost: the train step and the stages, portable against native.

Each measurement runs in a process of its own, since the pins must be in place before torch
loads (gan/numerics.py); portable and native alternate within each round, so both see the
same machine. Two tables:

- the train step of mlp and dcgan at the params' batch size (ms per step, median of timed
  windows of the real training loop on data/prepared);
- with ``--stages``, the wall time of each computing stage of the default run, its commands
  run in a scratch copy of data/ and models/ (train for ``--train-steps`` steps, default
  the params'), portable and native.

    python -m benchmarks.numerics_cost                  # the train step
    python -m benchmarks.numerics_cost --stages         # and the stages
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from gan import numerics

MODES = ("native", "portable")
# Portable mode less one pin, to see what each costs: MKL on its automatic path, torch's
# own elementwise math (gan/mathops.py), or oneDNN off (convolutions by ATen's unfold and
# MKL's matrix product, the portable mode of 2026-12-04). The first two do not keep the
# bits portable; the third did not on Intel CPUs (docs/resume.md).
VARIANTS = ("portable-mkl-auto", "portable-torch-math", "portable-onednn-off")


def child(mode: str, arch: str, params: Path, data: Path, window: int, windows: int) -> None:
    """One measurement: pin (or not) first, then load torch and time the loop."""
    import os

    threads = numerics.settings(params)[1]
    portable = mode.startswith("portable")
    numerics.pin_environment(portable, threads)
    if mode == "portable-mkl-auto":
        os.environ["MKL_CBWR"] = "AUTO"
    numerics.apply_torch(portable, threads)
    if mode == "portable-onednn-off":
        import torch

        torch.backends.mkldnn.enabled = False
    if mode == "portable-torch-math":
        from gan import mathops

        mathops.set_portable(False)
    from benchmarks.train_throughput import project_rate
    from gan import data as gan_data
    from gan import runtime
    from gan.config import load_section, read_params

    raw = read_params(params)
    model_cfg = load_section({**raw, "model": {**raw["model"], "arch": arch}}, "model")
    train_cfg = load_section(raw, "train")
    split = gan_data.load_prepared(data, "train")
    times = project_rate(model_cfg, train_cfg, split, window, windows,
                         runtime.select_device("cpu"))
    print(json.dumps({"ms": 1000 * statistics.median(times)}))


def measure(mode: str, arch: str, args) -> float:
    done = subprocess.run([sys.executable, "-m", "benchmarks.numerics_cost", "--child", mode,
                           arch, "--params", str(args.params), "--data", str(args.data),
                           "--window", str(args.window), "--windows", str(args.windows)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["ms"]


STAGE_ARGS = {
    "prepare": "--raw data/raw --out data/prepared --metrics metrics/data.json",
    "classifier": "--data data/prepared --out models/classifier.pt "
                  "--metrics metrics/classifier.json",
    "train": "--data data/prepared --checkpoint models/gan.pt --log-dir metrics/train "
             "--resume .resume/train.pt --classifier models/classifier.pt "
             "--evolution outputs/evolution",
    "sample": "--checkpoint models/gan.pt --data data/prepared --out outputs/samples.png "
              "--pictures outputs/pictures --classifier models/classifier.pt "
              "--evolution outputs/evolution",
    "evaluate": "--checkpoint models/gan.pt --classifier models/classifier.pt "
                "--data data/prepared --out metrics/eval.json",
}


def stage_times(args) -> dict[str, dict[str, float]]:
    """Wall seconds of each computing stage, run from the project root on scratch paths."""
    times: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in MODES:
            work = Path(scratch) / mode
            shutil.copytree(Path("data/raw"), work / "data/raw")
            params = yaml.safe_load(args.params.read_text())
            params["numerics"]["portable"] = mode == "portable"
            params["resume"].update(store="off")
            if args.train_steps:
                params["train"]["steps"] = args.train_steps
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            for stage, rest in STAGE_ARGS.items():
                rest = " ".join(part if part.startswith("--") else str(work / part)
                                for part in rest.split())
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", f"stages.{stage}", "--params",
                                str(work / "params.yaml"), *rest.split()], check=True,
                               capture_output=True)
                times[mode][stage] = time.perf_counter() - start
                print(f"  {mode:8s} {stage:10s} {times[mode][stage]:7.1f} s", flush=True)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--archs", default="mlp,dcgan")
    p.add_argument("--rounds", type=int, default=3, help="native/portable alternations")
    p.add_argument("--window", type=int, default=40, help="steps per timed window")
    p.add_argument("--windows", type=int, default=4, help="timed windows (median is shown)")
    p.add_argument("--stages", action="store_true", help="also time the computing stages")
    p.add_argument("--variants", action="store_true", help="also portable less one pin: "
                   "MKL's automatic path, torch's elementwise math, oneDNN off")
    p.add_argument("--train-steps", type=int, help="train steps of the stage run")
    p.add_argument("--child", nargs=2, metavar=("MODE", "ARCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child, args.params, args.data, args.window, args.windows)
        return
    archs = args.archs.split(",")
    modes = MODES + (VARIANTS if args.variants else ())
    ms: dict[tuple[str, str], list[float]] = {(a, m): [] for a in archs for m in modes}
    for _ in range(args.rounds):
        for arch in archs:
            for mode in modes:
                ms[arch, mode].append(measure(mode, arch, args))
    print(f"\ntrain step, batch {yaml.safe_load(args.params.read_text())['train']['batch_size']}"
          f", median of {args.rounds} rounds ({numerics.cpu()['cpu']}, {numerics.cpu()['isa']})")
    print(f"{'arch':8s} {'native ms':>10s} {'portable ms':>12s} {'portable/native':>16s}")
    for arch in archs:
        native, portable = (statistics.median(ms[arch, m]) for m in MODES)
        print(f"{arch:8s} {native:10.1f} {portable:12.1f} {portable / native:15.2f}x")
    for arch in archs if args.variants else ():
        native = statistics.median(ms[arch, "native"])
        for mode in VARIANTS:
            ms_mode = statistics.median(ms[arch, mode])
            print(f"{arch:8s} {mode:>23s} {ms_mode:7.1f} ms {ms_mode / native:6.2f}x native")
    if args.stages:
        times = stage_times(args)
        print(f"\n{'stage':10s} {'native s':>9s} {'portable s':>11s} {'portable/native':>16s}")
        for stage in STAGE_ARGS:
            native, portable = times["native"][stage], times["portable"][stage]
            print(f"{stage:10s} {native:9.1f} {portable:11.1f} {portable / native:15.2f}x")


if __name__ == "__main__":
    main()
