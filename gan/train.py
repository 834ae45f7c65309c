"""The training loop: D step(s), G step, EMA, device-side logging, exact resume.

``train()`` sets a run up in named parts (placement, networks, optimizers, noise, the log's
running sums, the resumable state), then runs the loop itself inline, top to bottom.
Optional speed paths: autocast (bf16, or fp16 with one gradient scaler per network),
channels_last, torch.compile, and DistributedDataParallel over torchrun's processes.

The resumable state holds every rank's RNG states and log sums besides the shared weights
and optimizer states, the stateful hooks' state (the evolution snapshots) and the run's
fingerprint, one digest per named part, so that a state from another run is told apart
and the line that ignores it says what differs.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.profiler import record_function
from tqdm import tqdm

from gan import losses, models, optim, runtime, validate
from gan.config import ModelConfig, TrainConfig, to_dict
from gan.data import DeviceBatches
from gan.errors import GanError, Interrupted
from gan.io import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint

# d_real, d_fake: mean D output (a probability for the logit losses); d_acc_*: share of
# real / generated images that D classifies correctly.
LOG_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake")
# Train keys that may change between an interrupted run and its resumption without altering
# the result: the checkpoint schedule, and the device, precision and memory format as asked
# for (what they resolve to is the fingerprint's "device" part).
RESUME_FREE_KEYS = ("checkpoint_every", "device", "precision", "memory_format")
# Latent batches of train.batch_size behind the EMA generator's batch-norm statistics each
# time it is used (2,048 latents at the default 128): enough for each channel's mean and
# variance, at the cost of 16 no-grad G passes per snapshot or FID and one more at the end.
STANDING_BATCHES = 16
# A periodic hook sees (step, generator) and may return metrics to log at that step. One
# that must survive a resume also has a ``name``, ``state_dict()`` and ``load_state_dict()``.
Hook = Callable[[int, nn.Module], "dict[str, float] | None"]


@dataclass
class TrainResult:
    generator: nn.Module  # the EMA generator when train.ema_decay is set
    discriminator: nn.Module
    checkpoint: dict[str, Any]  # what models/gan.pt holds: the weights and the config
    state: dict[str, Any] | None  # the whole resumable state at the last step (rank 0 only)
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0


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


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag the loop reads at the end of a step.

    Stopping between steps, never inside one, is what lets a resumed run match an
    uninterrupted one bit for bit.
    """
    received: list[int] = []
    previous = {}

    def handler(signum, _frame):
        received.append(signum)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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


def _digest(value: Any) -> str:
    """SHA-256 of bytes, or of the sorted-key JSON of anything else."""
    blob = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def code_files(packages: tuple[str, ...]) -> dict[str, str]:
    """{relative path: SHA-256} of the files of every loaded module of ``packages``.

    Paths come from module names (``gan/models/dcgan.py``), never from where the files lie,
    so the result depends on the code alone; ``python -m pkg.mod`` counts as ``pkg.mod``.
    """
    files = {}
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        origin = getattr(module, "__file__", None)
        if spec is None or origin is None or spec.name.split(".")[0] not in packages:
            continue
        parts = spec.name.split(".")
        folders = parts if spec.submodule_search_locations is not None else parts[:-1]
        relative = Path(*folders, Path(origin).name).as_posix()
        files[relative] = hashlib.sha256(Path(origin).read_bytes()).hexdigest()
    return dict(sorted(files.items()))


def fingerprint(seed: int, model_cfg: ModelConfig, train_cfg: TrainConfig, data: dict,
                where: Placement, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """What determines a run's result, as one digest per named part.

    params: the seed, model and train params (less RESUME_FREE_KEYS); data: the images,
    labels and class names; device: the resolved device type, precision, memory format and
    process count, kept readable; torch: its version. ``extra`` adds the caller's parts
    ({name: bytes or a JSON value}), such as its code; one named like a part above is folded
    into that part.
    """
    train_dict = {k: v for k, v in to_dict(train_cfg).items() if k not in RESUME_FREE_KEYS}
    images, labels = data["images"], data["labels"]
    data_digest = hashlib.sha256(json.dumps([list(data["classes"]), list(images.shape),
                                             str(images.dtype), str(labels.dtype)]).encode())
    data_digest.update(images.contiguous().cpu().numpy().tobytes())
    data_digest.update(labels.contiguous().cpu().numpy().tobytes())
    layout = "channels_last" if where.memory_format is torch.channels_last else "contiguous"
    processes = f"{where.world} process" + ("es" if where.world > 1 else "")
    parts = {
        "params": _digest([seed, to_dict(model_cfg), train_dict]),
        "data": data_digest.hexdigest(),
        "device": f"{where.device.type}, {where.precision}, {layout}, {processes}",
        "torch": torch.__version__,
    }
    for name, value in (extra or {}).items():
        digest = _digest(value)
        parts[name] = _digest([parts[name], digest]) if name in parts else digest
    return parts


def _mismatch(saved: Any, parts: dict[str, str]) -> str:
    """What differs between a saved state's fingerprint and this run's, in words."""
    if not isinstance(saved, dict):  # a state from before the fingerprint had parts
        return "other params, code or data"
    names = sorted(k for k in saved.keys() | parts.keys() if saved.get(k) != parts.get(k))
    what = "other " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1
                       else names[0] if names else "params")
    if "device" in names:
        what += f" ({saved.get('device')}; this run: {parts['device']})"
    return what


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
        # where it is used (``shown_at``), not averaged from the trained G's.
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


def _standing_seed(seed: int, step: int) -> int:
    """The seed of the latents behind the standing statistics at ``step``: a stream apart
    from every one that training draws from."""
    digest = hashlib.sha256(f"standing statistics {seed} {step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # below 2**63


def shown_at(nets: Networks, model_cfg: ModelConfig, batch_size: int, num_classes: int,
             seed: int, step: int, device: torch.device) -> nn.Module:
    """The generator samples are drawn from at ``step``, in eval mode.

    The EMA G first gets its standing statistics (``models.standing_statistics``) from a
    torch.Generator seeded with (seed, step): a function of its weights, the seed and the
    step alone, so runs stay bit-exact, every rank computes the same and a resumed run
    recomputes what the uninterrupted one did. Done once per step.
    """
    if nets.ema is not None and nets.standing_step != step:
        gen = torch.Generator(device=device).manual_seed(_standing_seed(seed, step))
        models.standing_statistics(nets.ema.module, model_cfg, num_classes, batch_size,
                                   STANDING_BATCHES, gen)
        nets.standing_step = step
    return nets.shown().eval()


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
    """Sums of LOG_KEYS since the last log, kept on the device: reading a loss every step
    would force a host-device sync per step."""

    def __init__(self, loss: losses.Loss, device: torch.device):
        self.loss = loss
        self.sums = torch.zeros(len(LOG_KEYS), device=device)
        self.counted = 0

    def readout(self, scores: torch.Tensor) -> torch.Tensor:
        # D(x) as a probability where D outputs logits, else the raw score.
        return torch.sigmoid(scores).mean() if self.loss.probabilistic else scores.mean()

    def add(self, d_loss: torch.Tensor, g_loss: torch.Tensor, real_scores: torch.Tensor,
            fake_scores: torch.Tensor) -> None:
        real_scores, fake_scores = real_scores.detach().float(), fake_scores.detach().float()
        self.sums += torch.stack([d_loss.detach(), g_loss.detach(),
                                  self.readout(real_scores), self.readout(fake_scores),
                                  (real_scores > self.loss.threshold).float().mean(),
                                  (fake_scores <= self.loss.threshold).float().mean()])
        self.counted += 1

    def take(self, world: int) -> dict[str, float]:
        """The means since the last take, over every rank's batch; then start again."""
        if world > 1:
            dist.all_reduce(self.sums)
            self.sums /= world
        means = (self.sums / self.counted).tolist()  # the one host-device sync per log
        self.sums.zero_()
        self.counted = 0
        return dict(zip(LOG_KEYS, means, strict=True))


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _all_finite(*modules: nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for m in modules for p in m.parameters()]
    return bool(torch.stack(flags).all())  # one sync for all tensors


def _check_finite(nets: Networks, step: int) -> None:
    if not _all_finite(nets.generator, nets.discriminator):
        raise GanError(f"train: weights are no longer finite at step {step}; the run "
                       f"diverged (try a lower train.lr or another train.loss)")


def _run_config(seed: int, model_cfg: ModelConfig, train_cfg: TrainConfig,
                data: dict) -> dict[str, Any]:
    # Without train.checkpoint_every: it only paces the resumable state, so it must not
    # change the checkpoint's bytes (dvc.yaml leaves it out of train's params).
    train = {k: v for k, v in to_dict(train_cfg).items() if k != "checkpoint_every"}
    return {"seed": seed, "model": to_dict(model_cfg), "train": train,
            "image_shape": list(data["images"].shape[1:]), "classes": list(data["classes"])}


def _weights(nets: Networks, config: dict[str, Any], step: int) -> dict[str, Any]:
    """What models/gan.pt holds: both networks, the EMA generator and the run's config."""
    return {"format": CHECKPOINT_FORMAT, "config": config, "step": step,
            "generator": _cpu_state(nets.generator),
            "generator_ema": _cpu_state(nets.ema.module) if nets.ema is not None else None,
            "discriminator": _cpu_state(nets.discriminator)}


def _buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.named_buffers()}


def _stateful(periodic: tuple[tuple[int, Hook], ...]) -> dict[str, Any]:
    """The hooks that keep state across a resume, by name."""
    return {hook.name: hook for _, hook in periodic if hasattr(hook, "state_dict")}


class StopVote:
    """Whether to stop after this step: a SIGINT/SIGTERM that reached any rank stops them all.

    With several processes the ranks add up their flags every step (one all-reduce of one
    number, on a gloo group even when training uses NCCL, so the GPU is never waited on);
    every rank gets the same answer, so all save the same step and leave together.
    """

    def __init__(self, received: list[int], world: int):
        self.received, self.world = received, world
        self.group = None
        if world > 1 and dist.get_backend() != "gloo":
            self.group = dist.new_group(backend="gloo")

    def __call__(self) -> bool:
        if self.world == 1:
            return bool(self.received)
        flag = torch.tensor([len(self.received)], dtype=torch.int64)
        dist.all_reduce(flag, group=self.group)
        return bool(flag.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier(group=self.group)


def _rank_part(nets: Networks, noise: Noise, log: LogSums) -> dict[str, Any]:
    """What differs from rank to rank: RNG states, the log's sums, batch-norm buffers."""
    modules = {"generator": nets.generator, "discriminator": nets.discriminator}
    if nets.ema is not None:
        modules["ema"] = nets.ema.module
    return {"rng": runtime.rng_state(noise.gen), "log_sums": log.sums.cpu().clone(),
            "buffers": {name: _buffers(module) for name, module in modules.items()}}


def _gather(part: dict[str, Any], where: Placement) -> list[dict[str, Any]] | None:
    """Every rank's part, on rank 0 (None on the others); a collective with several ranks."""
    if where.world == 1:
        return [part]
    parts = [None] * where.world if where.rank == 0 else None
    dist.gather_object(part, parts, dst=0)
    return parts


def _resumable(nets: Networks, opts: Optimizers, batches: DeviceBatches, noise: Noise,
               log: LogSums, history: list, hooks: dict[str, Any], config: dict,
               parts: dict[str, str], step: int, where: Placement) -> dict[str, Any] | None:
    """The weights plus everything else the loop carries from one step to the next.

    Weights, optimizer states and the data position are the same on every rank (DDP
    all-reduces the gradients); "ranks" holds each rank's own part. With several processes
    every rank must call this at the same step: rank 0 gets the state, the others None.
    """
    ranks = _gather(_rank_part(nets, noise, log), where)
    if ranks is None:
        return None
    return {
        **_weights(nets, config, step),
        "fingerprint": parts,
        "ema_averaged": int(nets.ema.n_averaged) if nets.ema is not None else 0,
        "opt_g": opts.g.state_dict(),
        "opt_d": opts.d.state_dict(),
        "schedulers": [s.state_dict() for s in opts.schedulers],
        "scalers": [s.state_dict() for s in opts.scalers],
        "batches_drawn": batches.drawn,
        "log_counted": log.counted,
        "history": list(history),
        "hooks": {name: hook.state_dict() for name, hook in hooks.items()},
        "ranks": ranks,
    }


def _restore(saved: dict[str, Any], nets: Networks, opts: Optimizers, batches: DeviceBatches,
             noise: Noise, log: LogSums, hooks: dict[str, Any],
             rank: int) -> list[dict[str, float]]:
    """Load a state ``_resumable`` made, with ``rank``'s own part; returns its history."""
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
    batches.drawn = saved["batches_drawn"]
    own = saved["ranks"][rank]
    modules = {"generator": nets.generator, "discriminator": nets.discriminator,
               "ema": nets.ema.module if nets.ema is not None else None}
    for name, buffers in own["buffers"].items():
        for key, buffer in modules[name].named_buffers():
            buffer.copy_(buffers[key])
    runtime.set_rng_state(own["rng"], noise.gen)
    log.sums.copy_(own["log_sums"].to(log.sums.device))
    log.counted = saved["log_counted"]
    for name, hook in hooks.items():
        if name in saved["hooks"]:
            hook.load_state_dict(saved["hooks"][name])
    return list(saved["history"])


def _load_resume(path: Path, parts: dict[str, str], world: int,
                 say: Callable[[str], None]) -> dict | None:
    """The saved state at ``path`` if this very run made it, else None (and one line why)."""
    try:
        saved = read_checkpoint(path, weights_only=False)
    except GanError as exc:
        say(f"train: ignoring {path}: {str(exc).split(': ', 1)[-1]}; starting from step 0")
        return None
    if saved.get("fingerprint") != parts:
        say(f"train: ignoring {path}: it was made with {_mismatch(saved.get('fingerprint'), parts)}"
            f"; starting from step 0")
        return None
    if len(saved["ranks"]) != world:  # the fingerprint's device part counts processes too
        say(f"train: ignoring {path}: it was made by {len(saved['ranks'])} processes, not "
            f"{world}; starting from step 0")
        return None
    return saved


def _check_same_start(start: int, where: Placement, path: Path | None) -> None:
    """With several processes, refuse to go on unless every rank resumes from one step."""
    if where.world == 1:
        return
    starts = [None] * where.world
    dist.all_gather_object(starts, start)
    if len(set(starts)) > 1:
        raise GanError(f"train: the {where.world} processes would start from different steps "
                       f"({', '.join(map(str, starts))}); delete {path} to start from step 0")


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    seed: int,
    data: dict,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    periodic: tuple[tuple[int, Hook], ...] = (),
    resume_path: Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
    fingerprint_parts: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a GAN on ``data`` (a prepared split) and return the networks and a checkpoint.

    ``on_log(step, record)`` receives the means of LOG_KEYS every ``log_every`` steps;
    each ``(every, hook)`` of ``periodic`` is called as ``hook(step, generator)`` every
    ``every`` steps with the (EMA) generator in eval mode, under a forked RNG so that it
    cannot change training. With ``resume_path``, state is saved there every
    ``checkpoint_every`` steps and on SIGINT/SIGTERM, and a file whose fingerprint matches
    resumes the run; ``fingerprint_parts`` adds the caller's parts to the fingerprint (see
    ``fingerprint``). Under torchrun every rank calls this: each reads the file and takes
    its own part, rank 0 alone writes it and speaks.
    """
    # --- setup ---
    where = place(model_cfg, train_cfg)
    device = where.device
    say = say if where.rank == 0 else (lambda _: None)
    runtime.set_deterministic(train_cfg.deterministic)
    runtime.seed_everything(seed)
    image_shape = tuple(data["images"].shape[1:])
    num_classes = len(data["classes"])
    validate.check_run(model_cfg, train_cfg, image_shape[-1])
    nets = build_networks(model_cfg, train_cfg, image_shape, num_classes, seed, where)
    loss = losses.get(train_cfg.loss)
    real_target = 1.0 - train_cfg.label_smoothing
    opts = build_optimizers(train_cfg, nets, where)
    scaler_g, scaler_d = opts.scalers
    batches = DeviceBatches(data["images"], data["labels"], train_cfg.batch_size, seed, device,
                            where.rank, where.world)
    share = slice(batches.offset, batches.offset + batches.share) if where.world > 1 else None
    noise = Noise(model_cfg, train_cfg.batch_size, num_classes, seed, device, share)
    log = LogSums(loss, device)
    config = _run_config(seed, model_cfg, train_cfg, data)
    parts = fingerprint(seed, model_cfg, train_cfg, data, where, fingerprint_parts)
    hooks = _stateful(periodic)
    seeking = train_cfg.mode_seeking > 0
    # A conditional penalty gives the D step's fakes the real batch's classes, which the
    # mode-seeking pairs of G's step cannot share: that one combination draws fresh fakes.
    reuse = train_cfg.reuse_fakes and not (seeking and loss.gradient_penalty
                                           and model_cfg.conditional)
    steps = train_cfg.steps
    history: list[dict[str, float]] = []

    def state(step: int) -> dict[str, Any] | None:
        return _resumable(nets, opts, batches, noise, log, history, hooks, config, parts, step,
                          where)

    def generator_at(step: int) -> nn.Module:
        return shown_at(nets, model_cfg, train_cfg.batch_size, num_classes, seed, step, device)

    start = 0
    if resume_path is not None and Path(resume_path).is_file():
        saved = _load_resume(Path(resume_path), parts, where.world, say)
        if saved is not None:
            try:
                history = _restore(saved, nets, opts, batches, noise, log, hooks, where.rank)
            except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise GanError(f"train: {resume_path} does not fit this run ({first}); delete "
                               f"it to start from step 0") from None
            start = saved["step"]
            say(f"train: resuming from step {start} of {steps} ({resume_path})")
            if on_log is not None:  # replay, so the log has no gap and no repeated step
                for record in history:
                    on_log(record["step"], {k: v for k, v in record.items() if k != "step"})
    _check_same_start(start, where, resume_path)

    # --- the loop ---
    bar = tqdm(range(start + 1, steps + 1), desc="train", unit="step", initial=start,
               total=steps, disable=not progress, dynamic_ncols=True)
    with stop_signals() as received:
        stop_asked = StopVote(received, where.world)
        for step in bar:
            # (1) D step(s): minimise d_loss, i.e. raise D on real images, lower it on fakes.
            for d_step in range(1, train_cfg.d_steps + 1):
                # With reuse_fakes the last D step's fakes keep their graph and serve the G
                # step too: one G forward per step instead of two (the classic tutorials).
                keep = reuse and d_step == train_cfg.d_steps
                with phase("data"):
                    real, real_labels = batches.next()
                    if where.memory_format is torch.channels_last:
                        real = real.contiguous(memory_format=where.memory_format)
                    real_labels = real_labels if model_cfg.conditional else None
                    z, fake_labels = noise.draw(paired=seeking and keep)
                    if loss.gradient_penalty and real_labels is not None:
                        # The penalty scores each real/fake interpolate under one label,
                        # which must be both ends' class: these fakes take the real batch's
                        # classes (the classes drawn above are discarded, so the noise
                        # stream is the same as without this line).
                        fake_labels = real_labels
                with phase("g_forward"), torch.set_grad_enabled(keep), where.autocast():
                    fake = (nets.g_run if keep else nets.g_plain)(z, fake_labels)
                with phase("d_forward"), where.autocast():
                    real_scores = nets.d_run(real, real_labels)
                    fake_scores = nets.d_run(fake.detach(), fake_labels)
                    # Losses in fp32 (.float() is a no-op there).
                    d_loss = loss.d(real_scores.float(), fake_scores.float(), real_target)
                if loss.gradient_penalty:
                    # (||grad D(x_hat)||_2 - 1)^2 at random interpolates (Gulrajani et al.),
                    # in fp32 outside autocast and before loss scaling, so its input
                    # gradient is the true one; its weight gradients are then scaled and
                    # unscaled with the rest of d_loss.
                    with phase("d_penalty"):
                        d_loss = d_loss + train_cfg.gp_weight * losses.gradient_penalty(
                            nets.discriminator, real, fake.float(), real_labels)
                if train_cfg.r1_weight > 0:
                    # R1 (Mescheder et al., 2018), (r1_weight / 2) E||grad_x D(x)||^2 at the
                    # real batch, with its classes: in fp32 outside autocast, before loss
                    # scaling and through the plain D, like the penalty above.
                    with phase("d_penalty"):
                        d_loss = d_loss + train_cfg.r1_weight / 2 * losses.r1_penalty(
                            nets.discriminator, real, real_labels)
                with phase("d_backward"):
                    opts.d.zero_grad(set_to_none=True)
                    scaler_d.scale(d_loss).backward()
                with phase("d_optimizer"):
                    if train_cfg.grad_clip is not None:
                        scaler_d.unscale_(opts.d)
                        nn.utils.clip_grad_value_(nets.discriminator.parameters(),
                                                  train_cfg.grad_clip)
                    scaler_d.step(opts.d)  # skipped (and the scale lowered) on inf/nan grads
                    scaler_d.update()

            # (2) G step: minimise g_loss through the updated D, updating only G.
            if not reuse:  # fresh fakes
                with phase("data"):
                    z, fake_labels = noise.draw(paired=seeking)
                with phase("g_forward"), where.autocast():
                    fake = nets.g_run(z, fake_labels)
            # D's weights are frozen for G's step: their gradients would be discarded (D's
            # next zero_grad), and not computing them saves part of the backward.
            with phase("g_through_d"), frozen(nets.discriminator), where.autocast():
                g_scores = nets.d_plain(fake, fake_labels)
                g_loss = loss.g(g_scores.float())
                if seeking:
                    g_loss = g_loss + train_cfg.mode_seeking * losses.mode_seeking(fake.float(),
                                                                                   z)
            with phase("g_backward"):
                opts.g.zero_grad(set_to_none=True)
                scaler_g.scale(g_loss).backward()
            with phase("g_optimizer"):
                if train_cfg.grad_clip is not None:
                    scaler_g.unscale_(opts.g)
                    nn.utils.clip_grad_value_(nets.generator.parameters(), train_cfg.grad_clip)
                scaler_g.step(opts.g)
                scaler_g.update()
                for sched in opts.schedulers:
                    sched.step()
                if nets.ema is not None:
                    nets.ema.update_parameters(nets.generator)

            # (3) Log, run the periodic hooks, save resumable state.
            log.add(d_loss, g_loss, real_scores, fake_scores)
            if step % train_cfg.log_every == 0 or step == steps:
                record = log.take(where.world)
                bad = [k for k, v in record.items() if not np.isfinite(v)]
                if bad:
                    raise GanError(f"train: {bad[0]} became {record[bad[0]]} by step {step}; "
                                   f"the run diverged (try a lower train.lr or another "
                                   f"train.loss)")
                history.append({"step": step, **record})
                if on_log is not None:
                    on_log(step, record)
                bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
            for every, hook in periodic:
                if step % every == 0 or step == steps:
                    shown = generator_at(step)
                    with torch.random.fork_rng(devices=runtime.cuda_devices(device)):
                        metrics = hook(step, shown)
                    shown.train()
                    if metrics:
                        history.append({"step": step, **metrics})
                        if on_log is not None:
                            on_log(step, metrics)
            stop = stop_asked()  # the same answer on every rank
            scheduled = bool(train_cfg.checkpoint_every) and \
                step % train_cfg.checkpoint_every == 0 and step < steps
            if resume_path is not None and (stop or scheduled):
                _check_finite(nets, step)
                saved_state = state(step)  # a collective with several ranks
                if saved_state is not None:
                    save_checkpoint(saved_state, Path(resume_path))
            if stop:
                stop_asked.barrier()  # no rank leaves before rank 0 has written the state
                if resume_path is None:
                    raise Interrupted(f"train: interrupted at step {step} of {steps}")
                raise Interrupted(f"train: interrupted at step {step} of {steps}; state saved "
                                  f"to {resume_path}; run the same command (or dvc repro) "
                                  f"again to resume")

    _check_finite(nets, steps)
    generator = generator_at(steps)  # before the state, which holds the EMA G's statistics
    final = state(steps)
    nets.generator.eval()
    nets.discriminator.eval()
    return TrainResult(generator, nets.discriminator, _weights(nets, config, steps),
                       final, history, start)
