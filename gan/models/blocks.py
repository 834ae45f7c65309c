"""Pieces every architecture shares: D's norms and label conditioning (the size ladder is
``gan.names.ladder``, torch-free, so the data stages can check an image size).

Conditioning modules have no parameters when ``model.conditional`` is false, so
unconditional models keep the state-dict keys they always had.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gan.sections import choose
from gan.sections.model import ModelConfig

# Length of G's label embedding, concatenated to z (the Keras cGAN tutorial's 50).
LABEL_EMBED_DIM = 50


# model.d_norm -> a norm over (B, C, H, W) maps. GroupNorm with one group normalises each
# sample over (C, H, W) alone, so samples stay independent (what WGAN-GP's penalty needs).
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "layer": lambda channels: nn.GroupNorm(1, channels),
    "none": lambda channels: nn.Identity(),
}


def add_spectral_norm(module: nn.Module) -> None:
    """Spectrally normalise every conv and linear weight of ``module`` (Miyato et al., 2018),
    and the class embedding of a projection D (Miyato & Koyama, 2018).

    Call after weight init: the parametrised weight is computed, not assignable.
    """
    targets = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # The projection's embedding multiplies D's features, so its norm scales D's gradient
    # in x as a layer's does (each row's norm is at most the largest singular value).
    # concat's LabelChannel embedding is left alone: its label map enters as an input
    # channel, a shift constant in x that leaves D's Lipschitz bound in x (the product of
    # the normalised layers' norms) as it is, so normalising it would only shrink the label.
    targets += [m.embed for m in module.modules() if isinstance(m, Projection)]
    for layer in targets:
        nn.utils.parametrizations.spectral_norm(layer)


def _need(labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None:
        raise ValueError("a conditional model needs labels (B,), got None")
    return labels


class NoLabels(nn.Module):
    """The unconditional case: labels are ignored and nothing is added."""

    extra_dim = 0  # G: added to the latent length; D: added input channels

    def latent(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return z

    def inputs(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return x

    def logits(self, logits: torch.Tensor, features: torch.Tensor,
               labels: torch.Tensor | None) -> torch.Tensor:
        return logits


class LatentLabels(NoLabels):
    """G's conditioning: z (B, latent) -> [z, embed(y)] (B, latent + LABEL_EMBED_DIM)."""

    extra_dim = LABEL_EMBED_DIM

    def __init__(self, num_classes: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, LABEL_EMBED_DIM)

    def latent(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([z, self.embed(_need(labels))], dim=1)


class LabelChannel(NoLabels):
    """D by concatenation: a learnt (H, W) map per class becomes one more input channel."""

    extra_dim = 1

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], feature_dim: int):
        super().__init__()
        self.size = image_shape[1:]
        self.embed = nn.Embedding(num_classes, image_shape[1] * image_shape[2])

    def inputs(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        label_map = self.embed(_need(labels)).view(x.shape[0], 1, *self.size)  # (B, 1, H, W)
        return torch.cat([x, label_map], dim=1)  # (B, C + 1, H, W)


class Projection(NoLabels):
    """D by projection (Miyato & Koyama, 2018): logit += <embed(y), features (B, F)>."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], feature_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, feature_dim)
        # Small, like the head's N(0, 0.02): N(0, 1) would swamp the unconditional logit.
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def logits(self, logits: torch.Tensor, features: torch.Tensor,
               labels: torch.Tensor | None) -> torch.Tensor:
        return logits + (self.embed(_need(labels)) * features).sum(dim=1)


D_CONDITIONING: dict[str, type[NoLabels]] = {"concat": LabelChannel, "projection": Projection}


def g_conditioning(cfg: ModelConfig, num_classes: int) -> NoLabels:
    return LatentLabels(num_classes) if cfg.conditional else NoLabels()


def d_conditioning(cfg: ModelConfig, num_classes: int, image_shape: tuple[int, int, int],
                   feature_dim: int) -> NoLabels:
    """D's label input; ``feature_dim`` is the length of the features a projection meets."""
    if not cfg.conditional:
        return NoLabels()
    return choose(D_CONDITIONING, "model.d_conditioning", cfg.d_conditioning)(
        num_classes, image_shape, feature_dim)
