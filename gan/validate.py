"""Refuse a model and train pair that cannot run: every registry name and every rule across keys.

``gan.sections`` checks each value alone (type, range); this module looks each name up in
the names of the registry that serves it and applies the rules that span keys. The train
stage calls ``check_run`` before it reads any data; ``gan.preflight`` calls it for the first
stage of the pipeline, so a run that cannot finish stops before anything is downloaded.

The names come from ``gan.names``, not from the registries that implement them (torch, the
models, the losses), so that this check stays small and an edit of a model or a loss
re-runs only the stages that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gan import names
from gan.errors import ConfigError
from gan.sections import choose
from gan.sections.model import ModelConfig
from gan.sections.train import TrainConfig


def _norm_for_penalty(m: ModelConfig, t: TrainConfig) -> str | None:
    if names.LOSSES[t.loss].gradient_penalty and names.ARCHS[m.arch].d_norm \
            and m.d_norm == "batch":
        return (f"train.loss: {t.loss} penalises per-sample gradients, which batch norm in D "
                f"couples; set model.d_norm to layer or none")
    return None


def _penalty_weight(m: ModelConfig, t: TrainConfig) -> str | None:
    if names.LOSSES[t.loss].gradient_penalty and t.gp_weight == 0:
        return (f"train.gp_weight: got 0.0, but {t.loss} without its penalty leaves the critic "
                f"unconstrained; set it above 0 (10.0 in Gulrajani et al.)")
    return None


def _norm_exists(m: ModelConfig, t: TrainConfig) -> str | None:
    if m.d_norm == "layer" and not names.ARCHS[m.arch].d_norm:
        return (f"model.d_norm: got 'layer', but {m.arch}'s discriminator has no "
                f"normalisation layers; set none, or use dcgan or resize_conv")
    return None


def _smoothing(m: ModelConfig, t: TrainConfig) -> str | None:
    if t.label_smoothing > 0 and not names.LOSSES[t.loss].label_smoothing:
        smoothable = ", ".join(k for k, v in names.LOSSES.items() if v.label_smoothing)
        return (f"train.label_smoothing: got {t.label_smoothing}, but {t.loss} has no "
                f"probability target to smooth (only {smoothable}); set it to 0.0")
    return None


def _mode_seeking(m: ModelConfig, t: TrainConfig) -> str | None:
    if t.mode_seeking > 0 and t.batch_size // (t.devices * t.nodes) < 2:
        return (f"train.mode_seeking: got {t.mode_seeking}, but it pairs images within each "
                f"process's batch, which has {t.batch_size // (t.devices * t.nodes)}; raise "
                f"train.batch_size to at least {2 * t.devices * t.nodes} or set it to 0.0")
    return None


def check_policies(policies: Sequence[str]) -> None:
    """Refuse an unknown train.augment policy or one named twice."""
    for name in policies:
        choose(dict.fromkeys(names.AUGMENT_POLICIES), "train.augment", name)
    twice = sorted({name for name in policies if list(policies).count(name) > 1})
    if twice:
        raise ConfigError(f"train.augment: {twice[0]!r} is listed twice; list each policy "
                          f"once ({', '.join(names.AUGMENT_POLICIES)})")


RULES: tuple[Callable[[ModelConfig, TrainConfig], str | None], ...] = (
    _norm_for_penalty, _penalty_weight, _norm_exists, _smoothing, _mode_seeking)


def check_run(model_cfg: ModelConfig, train_cfg: TrainConfig,
              image_size: int | None = None) -> None:
    """Raise ConfigError, one line saying why, on a model and train pair that cannot run
    (on images of ``image_size`` pixels, when given)."""
    choose(names.ARCHS, "model.arch", model_cfg.arch)
    choose(dict.fromkeys(names.NOISES), "model.noise", model_cfg.noise)
    choose(dict.fromkeys(names.D_NORMS), "model.d_norm", model_cfg.d_norm)
    choose(dict.fromkeys(names.D_CONDITIONING), "model.d_conditioning",
           model_cfg.d_conditioning)
    choose(names.LOSSES, "train.loss", train_cfg.loss)
    choose(dict.fromkeys(names.OPTIMIZERS), "train.optimizer", train_cfg.optimizer)
    choose(dict.fromkeys(names.LR_DECAYS), "train.lr_decay", train_cfg.lr_decay)
    choose(dict.fromkeys(("auto", *names.PRECISIONS)), "train.precision", train_cfg.precision)
    check_policies(train_cfg.augment or ())
    for rule in RULES:
        message = rule(model_cfg, train_cfg)
        if message is not None:
            raise ConfigError(message)
    if image_size is not None and names.ARCHS[model_cfg.arch].ladder is not None:
        names.ladder(image_size, model_cfg.arch)
