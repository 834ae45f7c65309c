"""params.yaml's ``model`` section: the architecture (train reads it; sample and evaluate
rebuild the model from the checkpoint's record of it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    section: ClassVar[str] = "model"

    arch: str = opt()  # gan.models.ARCHS
    conditional: bool = opt(False)
    d_conditioning: str = opt("projection")  # gan.models.blocks.D_CONDITIONING
    latent_dim: int = opt(min=1, max=4096)
    noise: str = opt("normal")  # gan.models.NOISES
    g_channels: int = opt(min=1, max=4096)
    d_channels: int = opt(min=1, max=4096)
    d_norm: str = opt("batch")  # gan.models.blocks.NORMS
    spectral_norm: bool = opt(False)
    kernel_size: int = opt(5, choices=(3, 5))
    dropout: float = opt(0.4, min=0.0, max=0.9)
