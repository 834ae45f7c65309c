"""The sweep picture of docs/results.md: the FID curves that `dvc plots diff` draws.

    python docs/sweep_curves.py s-base s-ema ... --out docs/sweep_fid.png

Asks `dvc plots diff <revisions> --json` for the data of dvc.yaml's "FID during training"
plot (the same numbers its HTML page draws) and draws one line per revision, so the page
shows what a reader would see in the browser.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import defaultdict
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOT = "FID during training"


def curves(revisions: list[str]) -> dict[str, list[tuple[int, float]]]:
    out = subprocess.run(["dvc", "plots", "diff", *revisions, "--json"], capture_output=True,
                         text=True, check=True).stdout
    data = json.loads(out)["data"][PLOT]
    points: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for plot in data:
        for row in plot["content"]["data"]["values"]:
            points[row["rev"]].append((int(row["step"]), float(row["fid"])))
    return {rev: sorted(points[rev]) for rev in revisions if rev in points}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("revisions", nargs="+", help="experiment names or git revisions")
    p.add_argument("--label", action="append", default=[], metavar="REV=TEXT",
                   help="legend text of a revision")
    p.add_argument("--out", type=Path, default=Path("docs/sweep_fid.png"))
    args = p.parse_args()
    labels = dict(item.split("=", 1) for item in args.label)
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    for rev, line in curves(args.revisions).items():
        steps, fids = zip(*line, strict=True)
        ax.plot(steps, fids, marker="o", markersize=3, label=labels.get(rev, rev))
    ax.set_yscale("log")
    ax.set_yticks([5, 6, 8, 10, 15, 20, 30, 40])
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("generator step")
    ax.set_ylabel("FID (2,000 samples, log scale)")
    ax.set_title("FID during training, sweep lines (dvc plots diff)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"{args.out}")


if __name__ == "__main__":
    main()
