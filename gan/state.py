"""The training state: everything one step hands to the next, and its resumable form.

``TrainingState`` holds the placement, networks (with G's EMA), optimizers, schedules and
gradient scalers, the data position, the noise RNG, the log's running sums and history and
the stateful hooks. ``state_dict()`` gathers every rank's own part (RNG states, log sums,
batch-norm buffers) to rank 0; ``load_state_dict()`` gives each rank its own part back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from gan import checkpoint, losses, models, optim, runtime
from gan.augment import Augment
from gan.batches import DeviceBatches
from gan.hooks import Hook, Stateful
from gan.sections.model import ModelConfig
from gan.sections.train import TrainConfig

# The version of the state file's layout (TrainingState.state_dict below); a state file of
# another version is ignored and the run starts from step 0 (gan.resume.read_state).
STATE_FORMAT = 1

# Latent batches of train.batch_size behind the EMA generator's batch-norm statistics each
# time it is used (1,024 latents at the default batch of 64): enough for each channel's mean
# and variance, at the cost of 16 no-grad G passes per snapshot or FID and one more at the end.
STANDING_BATCHES = 16


@dataclass(frozen=True)
class Placement:
    """Where the run computes and in what number format."""

    device: torch.device
    rank: int
    world: int
    precision: str  # fp32, bf16 or fp16 (auto resolved)
    memory_format: torch.memory_format

    def autocast(self):
        dtype = runtime.AUTOCAST_DTYPES[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)


def place(model_cfg: ModelConfig, train_cfg: TrainConfig) -> Placement:
    device = runtime.select_device(train_cfg.device)
    rank, world = runtime.world_info()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    return Placement(device, rank, world, runtime.resolve_precision(train_cfg.precision, device),
                     runtime.resolve_memory_format(train_cfg.memory_format, device,
                                                   model_cfg.arch))


@dataclass
class Networks:
    """G and D, G's moving average, and the wrappers the two steps call.

    g_run and d_run compute what the optimizers step on (DDP all-reduces their gradients);
    g_plain and d_plain serve the rest: no-grad fakes, D inside the G step (its weights
    frozen) and the gradient penalties, WGAN-GP's and R1 (double backward, which neither
    DDP's reducer nor torch.compile supports).
    """

    generator: nn.Module
    discriminator: nn.Module
    ema: AveragedModel | None
    g_plain: nn.Module
    d_plain: nn.Module
    g_run: nn.Module
    d_run: nn.Module
    standing_step: int | None = None  # the step whose standing statistics the EMA G holds

    def shown(self) -> nn.Module:
        """The generator that samples are drawn from: the EMA one when there is one."""
        return self.ema.module if self.ema is not None else self.generator

    def by_name(self) -> dict[str, nn.Module]:
        """The modules whose buffers differ from rank to rank, by their name in the state."""
        modules = {"generator": self.generator, "discriminator": self.discriminator}
        if self.ema is not None:
            modules["ema"] = self.ema.module
        return modules


def ema_update(decay: float, warmup: float = 10.0) -> Callable[[list, list, torch.Tensor], None]:
    """AveragedModel's update for an EMA of G's weights with a warm-up.

    After n updates the average moves to ``rate * average + (1 - rate) * weights`` with
    rate = min(decay, (1 + n) / (warmup + n)). ``warmup`` 10 is the num_updates rule of
    TensorFlow's ExponentialMovingAverage; a larger one averages over fewer of the latest
    steps (about n / (warmup - 1)) until the rate reaches ``decay``. A fixed 0.999 would
    still hold 61 % of the initial weights after 500 steps.
    """
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               updates: torch.Tensor) -> None:
        # Reading the count costs no extra sync: AveragedModel has just compared it with 0.
        n = int(updates)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1 + n) / (warmup + n)))

    return update


def build_networks(model_cfg: ModelConfig, train_cfg: TrainConfig, image_shape: tuple,
                   num_classes: int, seed: int, where: Placement) -> Networks:
    generator, discriminator = models.build(model_cfg, image_shape, num_classes)
    generator.to(where.device, memory_format=where.memory_format).train()
    discriminator.to(where.device, memory_format=where.memory_format).train()
    if where.world > 1:
        # Same weights on every rank (same seed, and DDP broadcasts rank 0's); each rank
        # then draws its own dropout masks and penalty interpolates.
        torch.manual_seed(seed + 1_000_003 * where.rank)
    ema = None
    if train_cfg.ema_decay is not None:
        # Weights only: the EMA G's batch-norm statistics are estimated from its own weights
        # where it is used (``TrainingState.shown_at``), not averaged from the trained G's.
        ema = AveragedModel(generator, multi_avg_fn=ema_update(train_cfg.ema_decay,
                                                               train_cfg.ema_warmup),
                            use_buffers=False)
    compiled = torch.compile if train_cfg.compile else (lambda module: module)
    g_plain, d_plain = compiled(generator), compiled(discriminator)
    g_run, d_run = g_plain, d_plain
    if where.world > 1:
        ids = [where.device.index] if where.device.type == "cuda" else None
        g_run = compiled(DistributedDataParallel(generator, device_ids=ids,
                                                 broadcast_buffers=False))
        d_run = compiled(DistributedDataParallel(discriminator, device_ids=ids,
                                                 broadcast_buffers=False))
    return Networks(generator, discriminator, ema, g_plain, d_plain, g_run, d_run)


@dataclass
class Optimizers:
    g: torch.optim.Optimizer
    d: torch.optim.Optimizer
    schedulers: list[torch.optim.lr_scheduler.LambdaLR]
    scalers: list[torch.amp.GradScaler]  # (G's, D's); no-ops unless precision is fp16


def build_optimizers(train_cfg: TrainConfig, nets: Networks, where: Placement) -> Optimizers:
    opt_g = optim.optimizer(train_cfg, nets.generator.parameters(), train_cfg.lr,
                            where.device.type)
    opt_d = optim.optimizer(train_cfg, nets.discriminator.parameters(),
                            train_cfg.lr_d or train_cfg.lr,
                            where.device.type)
    # fp16 needs loss scaling, one scaler per network.
    scalers = [torch.amp.GradScaler(where.device.type, enabled=where.precision == "fp16")
               for _ in (opt_g, opt_d)]
    return Optimizers(opt_g, opt_d, [optim.schedule(train_cfg, o) for o in (opt_g, opt_d)],
                      scalers)


class Noise:
    """Latent batches, and the classes asked of a conditional G, from the run's own RNG.

    Every rank draws the global batch (so the union over ranks is the 1-process batch) and
    keeps its own share.
    """

    def __init__(self, model_cfg: ModelConfig, batch_size: int, num_classes: int, seed: int,
                 device: torch.device, share: slice | None = None):
        self.cfg, self.batch_size, self.num_classes = model_cfg, batch_size, num_classes
        self.device, self.share = device, share
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def draw(self, paired: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z, labels or None); ``paired`` gives the second half of the batch the first
        half's classes (the mode-seeking term's pairs)."""
        cfg = self.cfg
        z = models.latent_noise(cfg.noise, self.batch_size, cfg.latent_dim, self.device,
                                self.gen)
        labels = None
        if cfg.conditional:
            labels = torch.randint(self.num_classes, (self.batch_size,), device=self.device,
                                   generator=self.gen)
        if self.share is not None:
            z, labels = z[self.share], labels[self.share] if labels is not None else None
        if paired and labels is not None:
            first, second = losses.pair_halves(labels.shape[0])
            labels[second] = labels[first]
        return z, labels


class LogSums:
    """Sums of the step's logged values since the last log, kept on the device: reading a
    loss every step would force a host-device sync per step."""

    def __init__(self, names: Sequence[str], device: torch.device):
        self.names = tuple(names)
        self.sums = torch.zeros(len(self.names), device=device)
        self.counted = 0

    def add(self, report: dict[str, torch.Tensor]) -> None:
        """Add one step's report ({name: 0-dim tensor}, every name of ``names``)."""
        self.sums += torch.stack([report[name] for name in self.names])
        self.counted += 1

    def take(self, world: int) -> dict[str, float]:
        """The means since the last take, over every rank's batch; then start again."""
        if world > 1:
            dist.all_reduce(self.sums)
            self.sums /= world
        means = (self.sums / self.counted).tolist()  # the one host-device sync per log
        self.sums.zero_()
        self.counted = 0
        return dict(zip(self.names, means, strict=True))


def _standing_seed(seed: int, step: int) -> int:
    """The seed of the latents behind the standing statistics at ``step``: a stream apart
    from every one that training draws from."""
    digest = hashlib.sha256(f"standing statistics {seed} {step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # below 2**63


def _buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.named_buffers()}


@dataclass
class TrainingState:
    """What the loop carries from one step to the next; ``step`` is the last one done."""

    model_cfg: ModelConfig
    train_cfg: TrainConfig
    seed: int
    num_classes: int
    where: Placement
    nets: Networks
    opts: Optimizers
    batches: DeviceBatches
    noise: Noise
    log: LogSums
    config: dict[str, Any]  # the run's config, as models/gan.pt records it
    fingerprint: dict[str, str]
    hooks: dict[str, Stateful] = field(default_factory=dict)  # the stateful ones, by name
    augment: Augment | None = None  # train.augment's transforms of D's inputs, when on
    step: int = 0
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", *LOG_KEYS}
    metrics: list[dict[str, float]] = field(default_factory=list)  # hooks' records

    @property
    def history(self) -> list[dict[str, float]]:
        """Every logged record in the order it was logged: a step's losses, then its hooks'
        metrics (a stable sort keeps each list's own order)."""
        return sorted(self.losses + self.metrics, key=lambda record: record["step"])

    def shown_at(self, step: int) -> nn.Module:
        """The generator samples are drawn from at ``step``, in eval mode.

        The EMA G first gets its standing statistics (``models.standing_statistics``) from
        a torch.Generator seeded with (seed, step): a function of its weights, the seed and
        the step alone, so runs stay bit-exact, every rank computes the same and a resumed
        run recomputes what the uninterrupted one did. Done once per step.
        """
        nets = self.nets
        if nets.ema is not None and nets.standing_step != step:
            device = self.where.device
            gen = torch.Generator(device=device).manual_seed(_standing_seed(self.seed, step))
            models.standing_statistics(nets.ema.module, self.model_cfg, self.num_classes,
                                       self.train_cfg.batch_size, STANDING_BATCHES, gen)
            nets.standing_step = step
        return nets.shown().eval()

    def weights(self) -> dict[str, Any]:
        """What models/gan.pt holds at this step."""
        nets = self.nets
        return checkpoint.weights(nets.generator, nets.discriminator,
                                  nets.ema.module if nets.ema is not None else None,
                                  self.config, self.step)

    def _rank_part(self) -> dict[str, Any]:
        """What differs from rank to rank: RNG states, the log's sums, batch-norm buffers."""
        part = {"rng": runtime.rng_state(self.noise.gen), "log_sums": self.log.sums.cpu().clone(),
                "buffers": {name: _buffers(module)
                            for name, module in self.nets.by_name().items()}}
        if self.augment is not None:
            part["augment_rng"] = self.augment.gen.get_state()
        return part

    def _gathered(self) -> list[dict[str, Any]] | None:
        """Every rank's part, on rank 0 (None on the others); a collective with several
        ranks."""
        part = self._rank_part()
        if self.where.world == 1:
            return [part]
        parts = [None] * self.where.world if self.where.rank == 0 else None
        dist.gather_object(part, parts, dst=0)
        return parts

    def state_dict(self) -> dict[str, Any] | None:
        """The weights plus everything else the loop carries from one step to the next.

        Weights, optimizer states and the data position are the same on every rank (DDP
        all-reduces the gradients); "ranks" holds each rank's own part. With several
        processes every rank must call this at the same step: rank 0 gets the state, the
        others None.
        """
        ranks = self._gathered()
        if ranks is None:
            return None
        nets, opts = self.nets, self.opts
        return {
            **self.weights(),  # a checkpoint's keys, its "format" replaced by the state's
            "format": STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "ema_averaged": int(nets.ema.n_averaged) if nets.ema is not None else 0,
            "opt_g": opts.g.state_dict(),
            "opt_d": opts.d.state_dict(),
            "schedulers": [s.state_dict() for s in opts.schedulers],
            "scalers": [s.state_dict() for s in opts.scalers],
            "batches_drawn": self.batches.drawn,
            "log_counted": self.log.counted,
            "losses": list(self.losses),
            "metrics": list(self.metrics),
            "hooks": {name: hook.state_dict() for name, hook in self.hooks.items()},
            "ranks": ranks,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Load a state ``state_dict`` made, with this rank's own part of it."""
        nets, opts = self.nets, self.opts
        nets.generator.load_state_dict(saved["generator"])
        nets.discriminator.load_state_dict(saved["discriminator"])
        if nets.ema is not None:
            nets.ema.module.load_state_dict(saved["generator_ema"])
            nets.ema.n_averaged.fill_(saved["ema_averaged"])
        opts.g.load_state_dict(saved["opt_g"])
        opts.d.load_state_dict(saved["opt_d"])
        for sched, sched_state in zip(opts.schedulers, saved["schedulers"], strict=True):
            sched.load_state_dict(sched_state)
        for scaler, scaler_state in zip(opts.scalers, saved["scalers"], strict=True):
            if scaler_state:
                scaler.load_state_dict(scaler_state)
        self.batches.drawn = saved["batches_drawn"]
        own = saved["ranks"][self.where.rank]
        modules = nets.by_name()
        for name, buffers in own["buffers"].items():
            for key, buffer in modules[name].named_buffers():
                buffer.copy_(buffers[key])
        runtime.set_rng_state(own["rng"], self.noise.gen)
        if self.augment is not None:
            self.augment.gen.set_state(own["augment_rng"])
        self.log.sums.copy_(own["log_sums"].to(self.log.sums.device))
        self.log.counted = saved["log_counted"]
        for name, hook in self.hooks.items():
            if name in saved["hooks"]:
                hook.load_state_dict(saved["hooks"][name])
        self.step = saved["step"]
        self.losses, self.metrics = list(saved["losses"]), list(saved["metrics"])


def build_state(model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int, data: dict,
                where: Placement, log_keys: Sequence[str], hooks: Sequence[Hook],
                fingerprint: dict[str, str]) -> TrainingState:
    """A fresh state at step 0: networks initialised from the global RNG, seeded before."""
    image_shape = tuple(data["images"].shape[1:])
    num_classes = len(data["classes"])
    nets = build_networks(model_cfg, train_cfg, image_shape, num_classes, seed, where)
    opts = build_optimizers(train_cfg, nets, where)
    batches = DeviceBatches(data["images"], data["labels"], train_cfg.batch_size, seed,
                            where.device, where.rank, where.world)
    share = slice(batches.offset, batches.offset + batches.share) if where.world > 1 else None
    noise = Noise(model_cfg, train_cfg.batch_size, num_classes, seed, where.device, share)
    augment = None
    if train_cfg.augment:
        augment = Augment(train_cfg.augment, seed, where.device, train_cfg.batch_size, share)
    return TrainingState(
        model_cfg, train_cfg, seed, num_classes, where, nets, opts, batches, noise,
        LogSums(log_keys, where.device), checkpoint.run_config(seed, model_cfg, train_cfg, data),
        fingerprint, {hook.name: hook for hook in hooks if isinstance(hook, Stateful)},
        augment)
