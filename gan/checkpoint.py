"""The checkpoint, models/gan.pt: what training writes (both networks, the EMA G, the run's
config) and what the sample and evaluate stages rebuild from it. The resumable training
state is another file with its own format (gan.resume); it holds a checkpoint's keys and
more."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan import models, runtime
from gan.errors import GanError
from gan.io import read_torch, save_torch
from gan.sections import from_params, to_record
from gan.sections.model import ModelConfig
from gan.sections.train import TrainConfig

# The version of the checkpoint's layout (``weights``); a file of another version is refused.
CHECKPOINT_FORMAT = 1


def run_config(seed: int, model_cfg: ModelConfig, train_cfg: TrainConfig,
               data: dict) -> dict[str, Any]:
    """The run's config as the checkpoint records it: seed, model, train, data's shape."""
    return {"seed": seed, "model": to_record(model_cfg), "train": to_record(train_cfg),
            "image_shape": list(data["images"].shape[1:]), "classes": list(data["classes"])}


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def weights(generator: nn.Module, discriminator: nn.Module, ema: nn.Module | None,
            config: dict[str, Any], step: int) -> dict[str, Any]:
    """What models/gan.pt holds: both networks, the EMA generator and the run's config."""
    return {"format": CHECKPOINT_FORMAT, "config": config, "step": step,
            "generator": _cpu_state(generator),
            "generator_ema": _cpu_state(ema) if ema is not None else None,
            "discriminator": _cpu_state(discriminator)}


def save_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically."""
    save_torch(ckpt, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint of CHECKPOINT_FORMAT, loaded as data, or one GanError naming the file."""
    return read_torch(path, CHECKPOINT_FORMAT, "checkpoint",
                      "; run the train stage (dvc repro train)")


@dataclass(frozen=True)
class Trained:
    """A generator rebuilt from a checkpoint, with what it was trained on."""

    generator: nn.Module  # in eval mode; the EMA weights when the run kept them
    model: ModelConfig
    image_shape: tuple[int, int, int]
    classes: list[str]


def load_generator(path: Path, device: torch.device | None = None,
                   prefer_ema: bool = True) -> Trained:
    """Rebuild a checkpoint's generator (its EMA copy when there is one) from the file alone."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    cfg = ckpt["config"]
    model_cfg = from_params(ModelConfig, cfg["model"], "model")
    image_shape = tuple(cfg["image_shape"])
    generator, _ = models.build(model_cfg, image_shape, len(cfg["classes"]))
    state = ckpt["generator"]
    if prefer_ema and ckpt.get("generator_ema") is not None:
        state = ckpt["generator_ema"]
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GanError(f"{path}: generator weights do not fit model.arch "
                       f"{model_cfg.arch!r} ({first})") from None
    device = device or torch.device("cpu")
    # The layout training uses by default (channels_last for conv Gs on the CPU and CUDA).
    layout = runtime.resolve_memory_format("auto", device, model_cfg.arch)
    generator.to(device, memory_format=layout).eval()
    return Trained(generator, model_cfg, image_shape, list(cfg["classes"]))
