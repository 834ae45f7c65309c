"""Matplotlib figures: training curves, the latent-arithmetic equation, nearest training
images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

if TYPE_CHECKING:  # tensors are only handed in: the plot stage draws without loading torch
    import torch

from gan.errors import GanError  # noqa: E402
from gan.io import write_atomic  # noqa: E402

# The logged metrics the loss-curve figure draws (the train stage logs them every log_every).
CURVES = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake")


def read_dvclive_metrics(plots_dir: Path, names: tuple[str, ...] = CURVES) -> pd.DataFrame:
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
    """Three panels against step: D and G losses; mean D outputs; D accuracy on real and fake."""
    smooth = log.rolling(smoothing, min_periods=1).mean() if smoothing > 1 else log
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 8), sharex=True, dpi=dpi)
    top.plot(smooth.index, smooth["d_loss"], label="D loss", color="tab:blue")
    top.plot(smooth.index, smooth["g_loss"], label="G loss", color="tab:orange")
    top.set_ylabel("loss")
    middle.plot(smooth.index, smooth["d_real"], label="D(x), real", color="tab:green")
    middle.plot(smooth.index, smooth["d_fake"], label="D(G(z)), generated", color="tab:red")
    middle.set_ylabel("mean D output")
    bottom.plot(smooth.index, smooth["d_acc_real"], label="real called real", color="tab:green")
    bottom.plot(smooth.index, smooth["d_acc_fake"], label="generated called generated",
                color="tab:red")
    # 0.5 is a coin toss: where both curves sit near it, D can no longer tell them apart.
    bottom.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_ylabel("D accuracy")
    bottom.set_xlabel("generator step")
    for ax in (top, middle, bottom):
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    title = "Training curves" + (f" (moving average of {smoothing} logs)" if smoothing > 1 else "")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def arithmetic_figure(images: torch.Tensor, dpi: int = 100) -> plt.Figure:
    """The images (4, C, H, W) in [-1, 1] of a, b, c and a - b + c, as one labelled equation."""
    fig, axes = plt.subplots(1, 7, figsize=(8, 1.9), dpi=dpi,
                             gridspec_kw={"width_ratios": [4, 1, 4, 1, 4, 1, 4]})
    pictures = iter(zip(images, ("a", "b", "c", "a − b + c"), strict=True))
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i % 2:
            ax.text(0.5, 0.5, "−+="[i // 2], fontsize=22, ha="center", va="center")
            continue
        image, label = next(pictures)
        pixels = image.clamp(-1, 1).add(1).div(2).permute(1, 2, 0).numpy()  # (H, W, C)
        ax.imshow(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, cmap="gray",
                  vmin=0, vmax=1)
        ax.set_title(label)
    fig.suptitle("Latent arithmetic: G(a − b + c)")
    fig.tight_layout()
    return fig


def _show(ax: plt.Axes, image: torch.Tensor) -> None:
    """Draw one image (C, H, W) in [-1, 1] on ``ax``, without axes."""
    pixels = image.clamp(-1, 1).add(1).div(2).permute(1, 2, 0).numpy()  # (H, W, C)
    ax.imshow(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def nearest_figure(samples: torch.Tensor, nearest: torch.Tensor, distance: torch.Tensor,
                   copies: int, pool: int, bound: float, dpi: int = 100) -> plt.Figure:
    """Samples (n, C, H, W) above their nearest training images, each pair titled with its
    distance in the judge's features; ``copies`` of the ``pool`` samples searched lie
    closer to their training image than it lies to its own nearest other one and than
    ``bound``, how near training images typically are to each other (metrics.copies)."""
    n = samples.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(0.9 * n + 0.6, 2.6), dpi=dpi, squeeze=False)
    for i in range(n):
        _show(axes[0, i], samples[i])
        _show(axes[1, i], nearest[i])
        axes[0, i].set_title(f"{float(distance[i]):.2f}", fontsize=8)
    axes[0, 0].set_ylabel("sample", fontsize=8)
    axes[1, 0].set_ylabel("train", fontsize=8)
    fig.suptitle(f"The {n} of {pool} samples closest to a training image (distance in the "
                 f"judge's features).\n{copies} of {pool} count as copies: nearer their "
                 f"training image than it is to any other, and than training images\ntypically "
                 f"are to each other (median {bound:.2f})", fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: Path, *, parents: bool = True) -> None:
    """Write a figure as a PNG atomically, then free it (``parents``: see
    gan.io.write_atomic)."""
    try:
        write_atomic(path, lambda handle: fig.savefig(handle, format="png"), parents=parents)
    finally:
        plt.close(fig)
