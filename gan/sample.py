"""Pictures of a trained generator: grids, latent walks, arithmetic, real versus fake, GIFs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn

from gan import mathops, models
from gan.errors import GanError
from gan.io import write_atomic
from gan.sections import choose
from gan.sections.model import ModelConfig
from gan.sections.sample import SampleConfig

# Key colours of the real-versus-fake picture (RGB).
FAKE_COLOUR, REAL_COLOUR = (220, 40, 40), (40, 160, 60)


def fixed_latent(n: int, latent_dim: int, seed: int, noise: str = "normal") -> torch.Tensor:
    """(n, latent_dim) noise of ``model.noise`` drawn on the CPU, the same on every device."""
    return models.latent_noise(noise, n, latent_dim, None, torch.Generator().manual_seed(seed))


def grid_labels(n: int, num_classes: int, conditional: bool) -> torch.Tensor | None:
    """Classes 0, 1, … cycling over a grid of ``n`` for conditional models, else None."""
    return torch.arange(n) % num_classes if conditional else None


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None,
             batch_size: int = 512) -> torch.Tensor:
    """Images (n, C, H, W) in [-1, 1] on the CPU of ``G(z, labels)``, generated in batches."""
    device = next(generator.parameters()).device
    label_parts = labels.split(batch_size) if labels is not None else [None] * len(
        z.split(batch_size))
    parts = [generator(chunk.to(device), None if y is None else y.to(device)).float().cpu()
             for chunk, y in zip(z.split(batch_size), label_parts, strict=True)]
    return torch.cat(parts)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line from ``a`` to ``b`` (..., D) at fractions ``t`` (S,): (..., S, D)."""
    t = t.reshape(-1, 1)
    return a.unsqueeze(-2) * (1 - t) + b.unsqueeze(-2) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Great-circle walk from ``a`` to ``b`` (..., D) at fractions ``t`` (S,): (..., S, D).

    Gaussian latents live near a sphere of radius sqrt(D); a straight line cuts inside it,
    through norms G never saw in training (White, "Sampling generative networks", 2016).
    """
    a_unit = a / a.norm(dim=-1, keepdim=True)
    b_unit = b / b.norm(dim=-1, keepdim=True)
    # mathops' acos and sin: torch's reach MKL's vector math (gan/mathops.py)
    omega = mathops.acos((a_unit * b_unit).sum(-1).clamp(-1.0, 1.0)).unsqueeze(-1)  # (..., 1)
    sin_omega = mathops.sin(omega)
    t = t.reshape(-1, 1)
    # (..., S, 1) weights; nearly parallel endpoints fall back to the straight line.
    safe = sin_omega.abs() > 1e-6
    denom = torch.where(safe, sin_omega, torch.ones_like(sin_omega)).unsqueeze(-2)
    w_a = torch.where(safe.unsqueeze(-2), mathops.sin((1 - t) * omega.unsqueeze(-2)) / denom,
                      1 - t)
    w_b = torch.where(safe.unsqueeze(-2), mathops.sin(t * omega.unsqueeze(-2)) / denom, t)
    return a.unsqueeze(-2) * w_a + b.unsqueeze(-2) * w_b


INTERPOLATIONS: dict[str, Callable[..., torch.Tensor]] = {"linear": lerp, "spherical": slerp}
# sample.interpolation "auto": the walk that suits the noise G was trained on.
AUTO_INTERPOLATION = {"normal": "spherical", "uniform": "linear"}


def interpolation_method(name: str, noise: str) -> str:
    """The walk named by sample.interpolation, resolving ``auto`` from model.noise."""
    choose({"auto": None, **INTERPOLATIONS}, "sample.interpolation", name)
    return choose(AUTO_INTERPOLATION, "model.noise", noise) if name == "auto" else name


def interpolation_latents(rows: int, steps: int, latent_dim: int, seed: int, noise: str,
                          method: str) -> torch.Tensor:
    """(rows * steps, latent_dim): each row walks between its own random pair of latents."""
    ends = fixed_latent(2 * rows, latent_dim, seed, noise)
    walk = INTERPOLATIONS[method](ends[:rows], ends[rows:], torch.linspace(0, 1, steps))
    return walk.reshape(rows * steps, latent_dim)


def arithmetic_latents(latent_dim: int, seed: int, noise: str) -> torch.Tensor:
    """(4, latent_dim): random a, b, c and a - b + c (Radford et al., 2016, section 6.3)."""
    a, b, c = fixed_latent(3, latent_dim, seed, noise)
    return torch.stack([a, b, c, a - b + c])


def class_rows(num_classes: int, per_class: int, latent_dim: int, seed: int,
               noise: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents and labels of one row per class; a column shares its z across classes."""
    z = fixed_latent(per_class, latent_dim, seed, noise).repeat(num_classes, 1)
    return z, torch.arange(num_classes).repeat_interleave(per_class)


def real_vs_fake(real: torch.Tensor, fake: torch.Tensor,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and generated images shuffled together, and a mask (n,) true where generated."""
    images = torch.cat([real, fake])
    is_fake = torch.cat([torch.zeros(len(real), dtype=torch.bool),
                         torch.ones(len(fake), dtype=torch.bool)])
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order], is_fake[order]


def pick_real(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` distinct images drawn at random from a prepared split's images."""
    if n > len(images):
        raise GanError(f"sample.real_vs_fake: got {n}, but the test split holds only "
                       f"{len(images)} images")
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def to_grid_image(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A PIL image of ``images`` (n, C, H, W) in [-1, 1] tiled ``nrow`` per row."""
    # Imported here: torchvision's import pulls in torch._dynamo, seconds that every stage
    # importing this module for its checks would pay, though only the drawing ones draw.
    from torchvision.utils import make_grid

    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    grid = make_grid(images.clamp(-1, 1), nrow=nrow, padding=padding, pad_value=1.0)
    pixels = grid.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)  # (C, H, W)
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if images.shape[1] == 1 else array)


def mark_tiles(grid: Image.Image, is_fake: torch.Tensor, tile: tuple[int, int], nrow: int,
               padding: int = 6) -> Image.Image:
    """An RGB copy of a ``to_grid_image`` grid, each tile framed in its key colour, captioned.

    Frames are ``padding // 3`` wide so neighbours, which share one padding gap, never touch.
    """
    frame = max(1, padding // 3)
    caption = 14
    key = Image.new("RGB", (grid.width, grid.height + caption), (255, 255, 255))
    key.paste(grid.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(key)
    height, width = tile
    for i, fake in enumerate(is_fake.tolist()):
        # make_grid puts tile i at (padding + col * (width + padding), padding + row * (...)).
        x = padding + (i % nrow) * (width + padding)
        y = padding + (i // nrow) * (height + padding)
        draw.rectangle((x - frame, y - frame, x + width + frame - 1, y + height + frame - 1),
                       outline=FAKE_COLOUR if fake else REAL_COLOUR, width=frame)
    draw.text((padding, grid.height), "red: generated", fill=FAKE_COLOUR)
    draw.text((grid.width // 2, grid.height), "green: real", fill=REAL_COLOUR)
    return key


def save_png(image: Image.Image, path: Path, *, parents: bool = True) -> None:
    """Write a PNG atomically, so a failure never leaves a half-written picture (``parents``:
    see gan.io.write_atomic)."""
    write_atomic(path, lambda handle: image.save(handle, format="PNG"), parents=parents)


def save_gif(frames: Sequence[Image.Image], path: Path, frame_ms: int = 400) -> None:
    """An animated GIF of ``frames`` that loops forever and holds the last frame longer."""
    if not frames:
        raise GanError(f"{path}: no frames for the GIF (set train.snapshot_every > 0)")
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 4]
    first, *rest = [f.convert("P") if f.mode != "L" else f for f in frames]
    write_atomic(path, lambda handle: first.save(handle, format="GIF", save_all=True,
                                                 append_images=rest, duration=durations,
                                                 loop=0))


def pictures(generator: nn.Module, model: ModelConfig, num_classes: int, cfg: SampleConfig,
             real: torch.Tensor) -> dict[str, Image.Image]:
    """The sample stage's pictures by file stem; class pictures only for conditional models.

    Each picture draws from its own offset of ``cfg.seed``, so no two share latents.
    """
    dim, noise, conditional = model.latent_dim, model.noise, model.conditional
    rows, steps = cfg.interpolation_rows, cfg.interpolation_steps
    method = interpolation_method(cfg.interpolation, noise)
    out = {}

    # A conditional walk keeps one class per row (row r at class r mod classes).
    walk = interpolation_latents(rows, steps, dim, cfg.seed + 1, noise, method)
    row_labels = grid_labels(rows, num_classes, conditional)
    walk_labels = None if row_labels is None else row_labels.repeat_interleave(steps)
    out["interpolation"] = to_grid_image(generate(generator, walk, walk_labels), nrow=steps)

    n = cfg.real_vs_fake
    fake = generate(generator, fixed_latent(n, dim, cfg.seed + 2, noise),
                    grid_labels(n, num_classes, conditional))
    mixed, is_fake = real_vs_fake(pick_real(real, n, cfg.seed + 2), fake, cfg.seed + 2)
    nrow = math.ceil(math.sqrt(2 * n))
    out["real_vs_fake"] = to_grid_image(mixed, nrow=nrow, padding=6)
    out["real_vs_fake_key"] = mark_tiles(out["real_vs_fake"], is_fake, tuple(mixed.shape[2:]),
                                         nrow=nrow, padding=6)

    if conditional:
        z, labels = class_rows(num_classes, cfg.per_class, dim, cfg.seed + 3, noise)
        out["class_rows"] = to_grid_image(generate(generator, z, labels), nrow=cfg.per_class)
        # The same walk rendered at every class, one class per row.
        one = interpolation_latents(1, steps, dim, cfg.seed + 4, noise, method)
        labels = torch.arange(num_classes).repeat_interleave(steps)
        out["class_interpolation"] = to_grid_image(
            generate(generator, one.repeat(num_classes, 1), labels), nrow=steps)
    return out


def arithmetic_images(generator: nn.Module, model: ModelConfig, seed: int) -> torch.Tensor:
    """Images (4, C, H, W) of a, b, c and a - b + c; conditional models hold class 0."""
    z = arithmetic_latents(model.latent_dim, seed, model.noise)
    labels = torch.zeros(4, dtype=torch.long) if model.conditional else None
    return generate(generator, z, labels)
