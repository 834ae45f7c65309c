"""Matplotlib figures of training logs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from gan.config import GanError  # noqa: E402


def read_dvclive_metrics(plots_dir: Path, names: tuple[str, ...]) -> pd.DataFrame:
    """One frame indexed by step with a column per metric, from dvclive's ``<name>.tsv`` files."""
    frames = []
    for name in names:
        path = Path(plots_dir) / f"{name}.tsv"
        if not path.is_file():
            raise GanError(f"{path}: missing training log; run the train stage")
        frame = pd.read_csv(path, sep="\t")
        if "step" not in frame or name not in frame:
            raise GanError(f"{path}: expected columns step and {name}")
        frames.append(frame.set_index("step")[[name]])
    return pd.concat(frames, axis=1).sort_index()


def loss_curves(log: pd.DataFrame, smoothing: int = 1, dpi: int = 100) -> plt.Figure:
    """Two panels against step: D and G losses; mean D output on real and generated images."""
    smooth = log.rolling(smoothing, min_periods=1).mean() if smoothing > 1 else log
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, dpi=dpi)
    top.plot(smooth.index, smooth["d_loss"], label="D loss", color="tab:blue")
    top.plot(smooth.index, smooth["g_loss"], label="G loss", color="tab:orange")
    top.set_ylabel("loss")
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    bottom.plot(smooth.index, smooth["d_real"], label="D(x), real", color="tab:green")
    bottom.plot(smooth.index, smooth["d_fake"], label="D(G(z)), generated", color="tab:red")
    bottom.set_xlabel("generator step")
    bottom.set_ylabel("mean D output")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    title = "Training curves" + (f" (moving average of {smoothing} logs)" if smoothing > 1 else "")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
