"""The training loop: D step(s), G step, device-side logging, checkpoints."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gan import losses, models
from gan.config import GanError, ModelConfig, TrainConfig, to_dict
from gan.config import build as build_config
from gan.data import DeviceBatches

CHECKPOINT_FORMAT = 1
# d_real, d_fake: mean D output (a probability for the logit losses); d_acc_*: share of
# real / generated images that D classifies correctly.
LOG_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake")
Hook = Callable[[int, nn.Module], None]


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise GanError(f"train.device: got {name!r}, but no {name} device is available "
                       f"(use auto or cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(name: str, params, lr: float, betas: tuple[float, float]):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=betas[0])
    raise GanError(f"train.optimizer: got {name!r}, allowed: adam, rmsprop, sgd")


@dataclass
class TrainResult:
    generator: nn.Module
    discriminator: nn.Module
    checkpoint: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    seed: int,
    data: dict,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    periodic: tuple[tuple[int, Hook], ...] = (),
    progress: bool = True,
) -> TrainResult:
    """Train a GAN on ``data`` (a prepared split) and return the networks and a checkpoint.

    ``on_log(step, record)`` receives the means of LOG_KEYS every ``log_every`` steps;
    each ``(every, hook)`` of ``periodic`` is called as ``hook(step, generator)`` every
    ``every`` steps, with the generator in eval mode.
    """
    device = select_device(train_cfg.device)
    seed_everything(seed)
    image_shape = tuple(data["images"].shape[1:])
    num_classes = len(data["classes"])
    generator, discriminator = models.build(model_cfg, image_shape, num_classes)
    generator.to(device).train()
    discriminator.to(device).train()
    loss = losses.get(train_cfg.loss)
    opt_g = make_optimizer(train_cfg.optimizer, generator.parameters(), train_cfg.lr,
                           train_cfg.betas)
    opt_d = make_optimizer(train_cfg.optimizer, discriminator.parameters(),
                           train_cfg.lr_d or train_cfg.lr, train_cfg.betas)
    batches = DeviceBatches(data["images"], data["labels"], train_cfg.batch_size, seed, device)
    noise_gen = torch.Generator(device=device).manual_seed(seed)
    batch, latent = train_cfg.batch_size, model_cfg.latent_dim

    def noise() -> tuple[torch.Tensor, torch.Tensor | None]:
        """A latent batch and, for conditional models, the classes asked of G."""
        z = torch.randn(batch, latent, device=device, generator=noise_gen)
        if not model_cfg.conditional:
            return z, None
        return z, torch.randint(num_classes, (batch,), device=device, generator=noise_gen)

    def readout(scores: torch.Tensor) -> torch.Tensor:
        # D(x) as a probability where D outputs logits, else the raw score.
        return torch.sigmoid(scores).mean() if loss.probabilistic else scores.mean()

    # Sums of LOG_KEYS since the last log, kept on the device: reading a loss every step
    # would force a host-device sync per step.
    sums = torch.zeros(len(LOG_KEYS), device=device)
    counted = 0
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, train_cfg.steps + 1), desc="train", unit="step",
               disable=not progress, dynamic_ncols=True)
    for step in bar:
        # (1) D step(s): minimise d_loss, i.e. raise D on real images, lower it on fakes.
        for _ in range(train_cfg.d_steps):
            real, real_labels = batches.next()
            real_labels = real_labels if model_cfg.conditional else None
            z, fake_labels = noise()
            with torch.no_grad():
                fake = generator(z, fake_labels)
            real_scores = discriminator(real, real_labels)
            fake_scores = discriminator(fake, fake_labels)
            d_loss = loss.d(real_scores, fake_scores)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()

        # (2) G step: minimise g_loss on fresh fakes, through D but updating only G.
        z, fake_labels = noise()
        fake_scores_g = discriminator(generator(z, fake_labels), fake_labels)
        g_loss = loss.g(fake_scores_g)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

        real_scores, fake_scores = real_scores.detach(), fake_scores.detach()
        sums += torch.stack([d_loss.detach(), g_loss.detach(),
                             readout(real_scores), readout(fake_scores),
                             (real_scores > loss.threshold).float().mean(),
                             (fake_scores <= loss.threshold).float().mean()])
        counted += 1
        if step % train_cfg.log_every == 0 or step == train_cfg.steps:
            means = (sums / counted).tolist()  # the one host-device sync per log interval
            record = dict(zip(LOG_KEYS, means, strict=True))
            bad = [k for k, v in record.items() if not np.isfinite(v)]
            if bad:
                raise GanError(f"train: {bad[0]} became {record[bad[0]]} by step {step}; "
                               f"the run diverged (try a lower train.lr or another "
                               f"train.loss)")
            history.append({"step": step, **record})
            if on_log is not None:
                on_log(step, record)
            bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
            sums.zero_()
            counted = 0
        for every, hook in periodic:
            if step % every == 0 or step == train_cfg.steps:
                generator.eval()
                hook(step, generator)
                generator.train()

    generator.eval()
    discriminator.eval()
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": {"seed": seed, "model": to_dict(model_cfg), "train": to_dict(train_cfg),
                   "image_shape": list(image_shape), "classes": list(data["classes"])},
        "step": train_cfg.steps,
        "generator": _cpu_state(generator),
        "discriminator": _cpu_state(discriminator),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
    }
    return TrainResult(generator, discriminator, checkpoint, history)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_generator(path: Path, device: torch.device | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the generator of a checkpoint from the file alone; returns (G in eval, config)."""
    path = Path(path)
    if not path.is_file():
        raise GanError(f"{path}: checkpoint not found; run the train stage (dvc repro train)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GanError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GanError(f"{path}: not a checkpoint of this project (format "
                       f"{CHECKPOINT_FORMAT} expected)")
    cfg = ckpt["config"]
    model_cfg = build_config(ModelConfig, cfg["model"], "model")
    generator, _ = models.build(model_cfg, tuple(cfg["image_shape"]), len(cfg["classes"]))
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GanError(f"{path}: generator weights do not fit model.arch "
                       f"{model_cfg.arch!r} ({first})") from None
    generator.to(device or torch.device("cpu")).eval()
    return generator, cfg
