"""The maths of one training step: D's update(s), then G's, each a method of ``GanStep``.

The loop (gan.train) only calls the step and logs what it reports. A new D regulariser is
one more term in ``GanStep.d_penalties``; a new G term one more in ``GanStep.g_loss``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function

from gan import losses
from gan.augment import Augment
from gan.batches import DeviceBatches
from gan.sections.model import ModelConfig
from gan.sections.train import TrainConfig
from gan.state import Networks, Noise, Optimizers, Placement

# What a step reports, in the log's order. d_real, d_fake: mean D output (a probability for
# the logit losses); d_acc_*: share of real / generated images that D classifies correctly.
LOG_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake")


def phase(name: str):
    """A named region of the train step for torch.profiler (benchmarks.profile_step); free
    when no profiler is recording."""
    return record_function(name) if torch._C._autograd._profiler_enabled() \
        else nullcontext()


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Autograd skips ``module``'s weight gradients for the graphs recorded inside; its
    input gradients still flow. The backward may run after the block."""
    params = [p for p in module.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


@dataclass
class Fakes:
    """Generated images (B, C, H, W), the latents (B, latent_dim) and classes (B,) or None
    behind them."""

    images: torch.Tensor
    z: torch.Tensor
    labels: torch.Tensor | None


class GanStep:
    """One training step: ``train.d_steps`` D updates, then one G update.

    ``d_step`` and ``g_step`` are the two phases; each returns its logged values by name
    (LOG_KEYS), as 0-dim tensors left on the device.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, nets: Networks,
                 opts: Optimizers, where: Placement, augment: Augment | None = None):
        self.cfg, self.nets, self.opts, self.where = train_cfg, nets, opts, where
        # train.augment: D sees every image, real or fake, in both steps through this.
        self.seen = augment if augment is not None else (lambda images: images)
        self.conditional = model_cfg.conditional
        self.loss = losses.get(train_cfg.loss)
        self.real_target = 1.0 - train_cfg.label_smoothing
        self.seeking = train_cfg.mode_seeking > 0
        # A conditional penalty gives the D step's fakes the real batch's classes, which the
        # mode-seeking pairs of G's step cannot share: that one combination draws fresh fakes.
        self.reuse = train_cfg.reuse_fakes and not (
            self.seeking and self.loss.gradient_penalty and model_cfg.conditional)

    def __call__(self, batches: DeviceBatches, noise: Noise) -> dict[str, torch.Tensor]:
        """Run the step; the values to log, by name."""
        last = self.cfg.d_steps
        # (1) Update D: minimise d_loss, i.e. raise D on real images, lower it on fakes.
        for d_step in range(1, last + 1):
            # With reuse_fakes the last D step's fakes keep their graph and serve the G
            # step too: one G forward per step instead of two (the classic tutorials).
            report, fakes = self.d_step(batches, noise, keep=self.reuse and d_step == last)
        # (2) Update G: minimise g_loss through the updated D, updating only G.
        if not self.reuse:
            fakes = self.fresh_fakes(noise)
        return {**report, **self.g_step(fakes)}

    def d_step(self, batches: DeviceBatches, noise: Noise,
               keep: bool) -> tuple[dict[str, torch.Tensor], Fakes]:
        """One D update: minimise d_loss, i.e. raise D on real images, lower it on fakes.

        ``keep``: the fakes keep their graph for the G step. Returns D's logged values and
        the fakes.
        """
        nets, where = self.nets, self.where
        with phase("data"):
            real, real_labels = batches.next()
            if where.memory_format is torch.channels_last:
                real = real.contiguous(memory_format=where.memory_format)
            real_labels = real_labels if self.conditional else None
            z, fake_labels = noise.draw(paired=self.seeking and keep)
            if self.loss.gradient_penalty and real_labels is not None:
                # The penalty scores each real/fake interpolate under one label, which must
                # be both ends' class: these fakes take the real batch's classes (the classes
                # drawn above are discarded, so the noise stream is the same as without).
                fake_labels = real_labels
        with phase("g_forward"), torch.set_grad_enabled(keep), where.autocast():
            fake = (nets.g_run if keep else nets.g_plain)(z, fake_labels)
        with phase("augment"):
            # The penalties below are taken where D looks: at the augmented images.
            real, seen_fake = self.seen(real), self.seen(fake.detach())
        with phase("d_forward"), where.autocast():
            real_scores = nets.d_run(real, real_labels)
            fake_scores = nets.d_run(seen_fake, fake_labels)
            # Losses in fp32 (.float() is a no-op there).
            d_loss = self.loss.d(real_scores.float(), fake_scores.float(), self.real_target)
        d_loss = self.d_penalties(d_loss, real, real_labels, seen_fake)
        with phase("d_backward"):
            self.opts.d.zero_grad(set_to_none=True)
            self.opts.scalers[1].scale(d_loss).backward()
        with phase("d_optimizer"):
            self.optimizer_step(self.opts.d, self.opts.scalers[1], nets.discriminator)
        return self.d_report(d_loss, real_scores, fake_scores), Fakes(fake, z, fake_labels)

    def d_penalties(self, d_loss: torch.Tensor, real: torch.Tensor,
                    real_labels: torch.Tensor | None, fake: torch.Tensor) -> torch.Tensor:
        """``d_loss`` plus D's regularisers, each in fp32 outside autocast and before loss
        scaling, through the plain D, so that its input gradient is the true one."""
        cfg, discriminator = self.cfg, self.nets.discriminator
        if self.loss.gradient_penalty:
            # (||grad D(x_hat)||_2 - 1)^2 at random interpolates (Gulrajani et al.); its
            # weight gradients are then scaled and unscaled with the rest of d_loss.
            with phase("d_penalty"):
                d_loss = d_loss + cfg.gp_weight * losses.gradient_penalty(
                    discriminator, real, fake.float(), real_labels)
        if cfg.r1_weight > 0:
            # R1 (Mescheder et al., 2018), (r1_weight / 2) E||grad_x D(x)||^2 at the real
            # batch, with its classes.
            with phase("d_penalty"):
                d_loss = d_loss + cfg.r1_weight / 2 * losses.r1_penalty(
                    discriminator, real, real_labels)
        return d_loss

    def d_report(self, d_loss: torch.Tensor, real_scores: torch.Tensor,
                 fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """D's logged values: its loss, mean output on real and fake images, accuracies."""
        real_scores, fake_scores = real_scores.detach().float(), fake_scores.detach().float()
        threshold = self.loss.threshold
        return {"d_loss": d_loss.detach(), "d_real": self.readout(real_scores),
                "d_fake": self.readout(fake_scores),
                "d_acc_real": (real_scores > threshold).float().mean(),
                "d_acc_fake": (fake_scores <= threshold).float().mean()}

    def readout(self, scores: torch.Tensor) -> torch.Tensor:
        """Mean D(x): a probability where D outputs logits, else the raw score."""
        return torch.sigmoid(scores).mean() if self.loss.probabilistic else scores.mean()

    def fresh_fakes(self, noise: Noise) -> Fakes:
        """Fakes for the G step, drawn anew (without reuse_fakes)."""
        with phase("data"):
            z, labels = noise.draw(paired=self.seeking)
        with phase("g_forward"), self.where.autocast():
            return Fakes(self.nets.g_run(z, labels), z, labels)

    def g_step(self, fakes: Fakes) -> dict[str, torch.Tensor]:
        """One G update: minimise g_loss through the updated D, updating only G; then the
        learning-rate schedules and the EMA move on. Returns {"g_loss": ...}."""
        nets, scaler = self.nets, self.opts.scalers[0]
        # D's weights are frozen for G's step: their gradients would be discarded (D's
        # next zero_grad), and not computing them saves part of the backward.
        with phase("g_through_d"), frozen(nets.discriminator), self.where.autocast():
            g_loss = self.g_loss(fakes)
        with phase("g_backward"):
            self.opts.g.zero_grad(set_to_none=True)
            scaler.scale(g_loss).backward()
        with phase("g_optimizer"):
            self.optimizer_step(self.opts.g, scaler, nets.generator)
            for sched in self.opts.schedulers:
                sched.step()
            if nets.ema is not None:
                nets.ema.update_parameters(nets.generator)
        return {"g_loss": g_loss.detach()}

    def g_loss(self, fakes: Fakes) -> torch.Tensor:
        """G's loss on ``fakes`` through the plain D (and train.augment's transforms, drawn
        anew), plus its mode-seeking term."""
        seen = self.seen(fakes.images)
        g_loss = self.loss.g(self.nets.d_plain(seen, fakes.labels).float())
        if self.seeking:
            g_loss = g_loss + self.cfg.mode_seeking * losses.mode_seeking(
                fakes.images.float(), fakes.z)
        return g_loss

    def optimizer_step(self, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                       module: nn.Module) -> None:
        """Clip (train.grad_clip) and step; fp16's scaler skips a step with inf/nan
        gradients and lowers its scale."""
        if self.cfg.grad_clip is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_value_(module.parameters(), self.cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
