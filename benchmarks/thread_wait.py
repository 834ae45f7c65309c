"""How OpenMP's waiting threads share a busy machine: the train step under each wait policy,
on an idle machine and beside other work.

The stages pin ``numerics.threads`` threads (2 by default). When the machine's cores are
also busy with other work (another run, a test suite), OpenMP threads that spin while they
wait for each other take turns with that work and every parallel region waits for its
slowest thread. gan/numerics.py has them sleep when they wait (``OMP_WAIT_POLICY=PASSIVE``)
when other work wants the cores as a stage starts, and leaves libgomp's spinning otherwise,
unless the environment says how to wait. Policies: ``auto`` (what the stages do), ``spin``
(libgomp's default: spin 300,000 rounds, then sleep), ``passive`` (sleep at once), ``one
thread`` (no waiting at all, and other bits), and ``spin N`` for each of ``--spins``. The
load is ``--load`` processes each spinning on a core. Rounds alternate policies, so all see
the same machine.

    python -m benchmarks.thread_wait [--arch dcgan] [--rounds 3] [--load 2] [--spins 3000,30000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from gan import numerics

POLICIES = {
    "auto": {},  # what the stages do: gan.numerics.pin_environment decides
    "spin": {"GOMP_SPINCOUNT": "300000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one thread": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def step_ms(policy: str, args) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    params = args.params
    if policy == "one thread":
        params = args.one_thread_params
    done = subprocess.run([sys.executable, "-m", "benchmarks.numerics_cost", "--child",
                           "portable", args.arch, "--params", str(params), "--data",
                           str(args.data), "--window", str(args.window), "--windows",
                           str(args.windows)], capture_output=True, text=True, check=True,
                          env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])["ms"]


def main() -> None:
    import tempfile

    import yaml

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--arch", default="dcgan")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=int, default=20, help="steps per timed window")
    p.add_argument("--windows", type=int, default=3, help="timed windows (median is used)")
    p.add_argument("--load", type=int, default=2, help="spinning processes of the loaded runs")
    p.add_argument("--spins", default="", help="also these GOMP_SPINCOUNT values, e.g. 3000,30000")
    args = p.parse_args()
    for count in filter(None, args.spins.split(",")):
        POLICIES[f"spin {count}"] = {"GOMP_SPINCOUNT": count}
    with tempfile.TemporaryDirectory() as scratch:
        raw = yaml.safe_load(args.params.read_text())
        raw["numerics"]["threads"] = 1
        args.one_thread_params = Path(scratch) / "params.yaml"
        args.one_thread_params.write_text(yaml.safe_dump(raw, sort_keys=False))
        ms: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for machine in ("idle", "loaded"):
                spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                            for _ in range(args.load if machine == "loaded" else 0)]
                try:
                    for policy in POLICIES:
                        ms.setdefault((machine, policy), []).append(step_ms(policy, args))
                        print(f"  {machine:6s} {policy:10s} {ms[machine, policy][-1]:8.1f} ms",
                              flush=True)
                finally:
                    for spinner in spinners:
                        spinner.kill()
                        spinner.wait()
    where = numerics.cpu()
    print(f"\n{args.arch} train step, batch {raw['train']['batch_size']}, portable, median of "
          f"{args.rounds} rounds; loaded: {args.load} spinning processes "
          f"({where['cpu']}, family {where['cpu_family']} model {where['cpu_model']}, "
          f"{os.cpu_count()} cores)")
    print(f"{'machine':8s} {'policy':10s} {'ms per step':>12s} {'x passive idle':>15s}")
    base = statistics.median(ms["idle", "passive"])
    for (machine, policy), values in ms.items():
        median = statistics.median(values)
        print(f"{machine:8s} {policy:10s} {median:12.1f} {median / base:14.2f}x")


if __name__ == "__main__":
    main()
