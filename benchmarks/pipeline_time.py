"""Whole-pipeline timing: run ``dvc repro -f`` once and print each stage's wall time.

Stages are timed from DVC's own "Running stage" lines, read as they are printed, so the
times are those of the one real run (DVC's own work between stages counts towards the
stage before it). Afterwards it says whether ``dvc.lock`` came out byte for byte the same,
which is what reproducibility promises on the machine that wrote it.

    python -m benchmarks.pipeline_time            # the whole pipeline
    python -m benchmarks.pipeline_time train      # one stage and what it needs, forced

Run it inside the activated environment (DVC runs each stage's ``python`` from PATH).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

RUNNING = re.compile(r"^Running stage '([^']+)'")


def lock_hashes(path: Path) -> dict[str, str]:
    """stage -> the md5s of its outputs, as written in dvc.lock (empty when missing)."""
    if not path.is_file():
        return {}
    stages = yaml.safe_load(path.read_text()).get("stages", {})
    return {name: ",".join(out.get("md5", "") for out in stage.get("outs", []))
            for name, stage in stages.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("targets", nargs="*", help="stages to force (default: all)")
    p.add_argument("--lock", type=Path, default=Path("dvc.lock"))
    args = p.parse_args()

    before_bytes = args.lock.read_bytes() if args.lock.is_file() else b""
    before = lock_hashes(args.lock)
    cmd = ["dvc", "repro", "-f", *args.targets]
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            found = RUNNING.match(line)
            if found:
                marks.append((found.group(1), time.perf_counter()))
    total = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"error: dvc repro -f exited with {proc.returncode}", file=sys.stderr)
        return proc.returncode

    ends = [t for _, t in marks[1:]] + [start + total]
    rows = ["| stage | seconds | share |", "|---|---|---|"]
    for (name, began), ended in zip(marks, ends, strict=True):
        rows.append(f"| {name} | {ended - began:.1f} | {(ended - began) / total:.0%} |")
    rows.append(f"| all (dvc repro -f) | {total:.1f} | 100% |")
    print("\n" + "\n".join(rows))

    after = lock_hashes(args.lock)
    if args.lock.read_bytes() == before_bytes:
        print(f"\n{args.lock}: unchanged, byte for byte")
    else:
        changed = sorted(k for k in after if after.get(k) != before.get(k))
        print(f"\n{args.lock}: changed; stages whose outputs differ: "
              f"{', '.join(changed) or 'none (only deps or params entries)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
