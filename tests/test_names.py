"""gan.names, the registries' names alone, against the registries that implement them:
the same names in the same order (refusals list them), and the facts the rules read."""

from __future__ import annotations

import pytest
import torch

from gan import augment, losses, models, names, optim, runtime, sample
from gan.config import ModelConfig
from gan.errors import ConfigError
from gan.models import blocks


@pytest.mark.parametrize("listed,implemented", [
    (list(names.ARCHS), list(models.ARCHS)),
    (list(names.NOISES), list(models.NOISES)),
    (list(names.D_NORMS), list(blocks.NORMS)),
    (list(names.D_CONDITIONING), list(blocks.D_CONDITIONING)),
    (list(names.LOSSES), list(losses.LOSSES)),
    (list(names.OPTIMIZERS), list(optim.OPTIMIZERS)),
    (list(names.LR_DECAYS), list(optim.LR_DECAYS)),
    (list(names.PRECISIONS), list(runtime.AUTOCAST_DTYPES)),
    (list(names.AUGMENT_POLICIES), list(augment.POLICIES)),
    (list(names.INTERPOLATIONS), list(sample.INTERPOLATIONS)),
], ids=["archs", "noises", "d_norms", "d_conditioning", "losses", "optimizers", "lr_decays",
        "precisions", "augment", "interpolations"])
def test_names_are_the_registries_names_in_order(listed, implemented):
    assert listed == implemented


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_loss_facts_are_the_losses_own(name):
    loss = losses.LOSSES[name]
    assert names.LOSSES[name] == (loss.gradient_penalty, loss.label_smoothing)


@pytest.mark.parametrize("arch", list(models.ARCHS))
def test_d_norm_fact_says_whether_the_built_d_has_norm_layers(arch):
    cfg = ModelConfig(arch=arch, latent_dim=8, g_channels=4, d_channels=4, d_norm="layer")
    _, d = models.build(cfg, (1, 28, 28))
    has_norm = any(isinstance(m, torch.nn.GroupNorm) for m in d.modules())
    assert has_norm == names.ARCHS[arch].d_norm


@pytest.mark.parametrize("arch", list(models.ARCHS))
def test_ladder_fact_is_the_sizes_the_arch_builds(arch):
    cfg = ModelConfig(arch=arch, latent_dim=8, g_channels=4, d_channels=4)
    builds, listed = [], []
    for size in range(8, 66):
        try:
            models.build(cfg, (1, size, size))
            builds.append(size)
        except ConfigError:
            pass
        bases = names.ARCHS[arch].ladder
        try:
            if bases is not None:
                names.ladder(size, arch)
            listed.append(size)
        except ConfigError:
            pass
    assert builds == listed
    assert (arch in models.LADDERS) == (names.ARCHS[arch].ladder is not None)
