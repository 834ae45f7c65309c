"""Names-only registries: each name a registry key may take, and the facts about each entry
that the rules across keys need, without torch and without the implementations.

``gan.validate`` reads these, so the data stages, which refuse a params file that cannot
run before any work, depend on this file and not on the models, losses and optimizers: an
edit of an architecture or a loss re-runs only the stages that use it. Each registry that
serves a name (``gan.models.ARCHS``, ``gan.losses.LOSSES``, ...) must hold exactly the
names here, in the same order; ``tests/test_names.py`` holds the two to each other. A new
entry goes in both places.
"""

from __future__ import annotations

from typing import NamedTuple

from gan.errors import ConfigError


class ArchFacts(NamedTuple):
    d_norm: bool  # its D has normalisation layers, so model.d_norm applies
    ladder: tuple[int, ...] | None  # the base sizes of its image-size ladder; None: any size


class LossFacts(NamedTuple):
    gradient_penalty: bool  # D's loss needs gp_weight * the gradient penalty added
    label_smoothing: bool  # D's loss accepts a real target below 1


# model.arch (gan.models.ARCHS)
ARCHS: dict[str, ArchFacts] = {
    "mlp": ArchFacts(d_norm=False, ladder=None),
    "dcgan": ArchFacts(d_norm=True, ladder=(7, 4)),
    "resize_conv": ArchFacts(d_norm=True, ladder=(7, 8)),
}
NOISES = ("normal", "uniform")  # model.noise (gan.models.NOISES)
D_NORMS = ("batch", "layer", "none")  # model.d_norm (gan.models.blocks.NORMS)
D_CONDITIONING = ("concat", "projection")  # model.d_conditioning (gan.models.blocks)
# train.loss (gan.losses.LOSSES)
LOSSES: dict[str, LossFacts] = {
    "minimax": LossFacts(gradient_penalty=False, label_smoothing=True),
    "non_saturating": LossFacts(gradient_penalty=False, label_smoothing=True),
    "lsgan": LossFacts(gradient_penalty=False, label_smoothing=False),
    "hinge": LossFacts(gradient_penalty=False, label_smoothing=False),
    "wgan_gp": LossFacts(gradient_penalty=True, label_smoothing=False),
}
OPTIMIZERS = ("adam", "rmsprop", "sgd")  # train.optimizer (gan.optim.OPTIMIZERS)
LR_DECAYS = ("constant", "linear")  # train.lr_decay (gan.optim.LR_DECAYS)
PRECISIONS = ("fp32", "bf16", "fp16")  # train.precision but auto (gan.runtime.AUTOCAST_DTYPES)
AUGMENT_POLICIES = ("color", "translation", "cutout")  # train.augment (gan.augment.POLICIES)
INTERPOLATIONS = ("linear", "spherical")  # sample.interpolation but auto (gan.sample)


def ladder(image_size: int, arch: str) -> tuple[int, int]:
    """(base size, number of doubling blocks) with base * 2**blocks == image_size, for an
    architecture with a ladder; ConfigError naming data.image_size when there is none."""
    bases = ARCHS[arch].ladder
    if bases is None:
        raise ValueError(f"{arch} has no image-size ladder")
    for base in bases:
        blocks, size = 0, base
        while size < image_size:
            size, blocks = size * 2, blocks + 1
        if size == image_size and blocks >= 1:
            return base, blocks
    names = " or ".join(map(str, bases))
    raise ConfigError(f"data.image_size: got {image_size}, {arch} needs {names} times a "
                      f"power of two (e.g. 28, 32, 64)")
