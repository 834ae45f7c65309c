"""The training loop: D step(s), G step, EMA, device-side logging, exact resume.

Optional speed paths: autocast (bf16, or fp16 with one gradient scaler per network),
channels_last, torch.compile, and DistributedDataParallel over torchrun's processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from gan import losses, models
from gan.config import GanError, ModelConfig, TrainConfig, to_dict
from gan.config import build as build_config
from gan.data import DeviceBatches

CHECKPOINT_FORMAT = 1
# d_real, d_fake: mean D output (a probability for the logit losses); d_acc_*: share of
# real / generated images that D classifies correctly.
LOG_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake")
# Keys that may change between an interrupted run and its resumption: none alters the result.
RESUME_FREE_KEYS = ("checkpoint_every", "device")
# train.precision -> autocast dtype (None: no autocast).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# A periodic hook sees (step, generator) and may return metrics to log at that step.
Hook = Callable[[int, nn.Module], "dict[str, float] | None"]


class Interrupted(GanError):
    """Training stopped on SIGINT/SIGTERM after saving a resumable checkpoint."""


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise GanError(f"train.device: got {name!r}, but no {name} device is available "
                       f"(use auto or cpu)")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA (where supported), fp32 elsewhere; refuse what can't run."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    can = {"cuda": ("fp32", "fp16") + (("bf16",) if cuda_bf16 else ()),
           "cpu": ("fp32", "bf16", "fp16")}.get(device.type, ("fp32",))
    if name not in can:
        raise GanError(f"train.precision: {name} is not available on this {device.type} "
                       f"device (allowed here: auto, {', '.join(can)})")
    return name


def resolve_memory_format(name: str, device: torch.device, arch: str) -> torch.memory_format:
    """``auto``: channels_last for convolutional models on CUDA, where it is faster.

    On the CPU it is also faster for dcgan but changes the last bits of every run, so it
    is only used there when asked for.
    """
    if name == "auto":
        name = "channels_last" if device.type == "cuda" and arch != "mlp" else "contiguous"
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def world_info() -> tuple[int, int]:
    """(rank, world size) of the process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def process_group(device_name: str) -> Iterator[int]:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL on CUDA, else gloo).

    Yields this process's rank (0 without torchrun).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0
        return
    cuda = select_device(device_name).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """Ask CUDA for deterministic kernels (cuBLAS needs its workspace fixed first)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not on
    torch.backends.cudnn.deterministic = on
    torch.use_deterministic_algorithms(on)


def make_optimizer(name: str, params, lr: float, betas: tuple[float, float]):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=betas[0])
    raise GanError(f"train.optimizer: got {name!r}, allowed: adam, rmsprop, sgd")


def fingerprint(seed: int, model_cfg: ModelConfig, train_cfg: TrainConfig,
                images: torch.Tensor) -> str:
    """SHA-256 of what determines a run's result: seed, model and train params, the data."""
    train_dict = {k: v for k, v in to_dict(train_cfg).items() if k not in RESUME_FREE_KEYS}
    digest = hashlib.sha256(json.dumps([seed, to_dict(model_cfg), train_dict],
                                       sort_keys=True).encode())
    digest.update(images.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class TrainResult:
    generator: nn.Module  # the EMA generator when train.ema_decay is set
    discriminator: nn.Module
    checkpoint: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0


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


def _rng_state(noise_gen: torch.Generator) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "noise": noise_gen.get_state(),
    }


def _set_rng_state(state: dict[str, Any], noise_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    noise_gen.set_state(state["noise"])


def _all_finite(*modules: nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for m in modules for p in m.parameters()]
    return bool(torch.stack(flags).all())  # one sync for all tensors


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
) -> TrainResult:
    """Train a GAN on ``data`` (a prepared split) and return the networks and a checkpoint.

    ``on_log(step, record)`` receives the means of LOG_KEYS every ``log_every`` steps;
    each ``(every, hook)`` of ``periodic`` is called as ``hook(step, generator)`` every
    ``every`` steps with the (EMA) generator in eval mode, under a forked RNG so that it
    cannot change training. With ``resume_path``, state is saved there every
    ``checkpoint_every`` steps and on SIGINT/SIGTERM, and a matching file resumes the run.
    """
    device = select_device(train_cfg.device)
    rank, world = world_info()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    precision = resolve_precision(train_cfg.precision, device)
    memory_format = resolve_memory_format(train_cfg.memory_format, device, model_cfg.arch)
    set_deterministic(train_cfg.deterministic)
    seed_everything(seed)
    image_shape = tuple(data["images"].shape[1:])
    num_classes = len(data["classes"])
    models.validate(model_cfg, train_cfg)
    generator, discriminator = models.build(model_cfg, image_shape, num_classes)
    generator.to(device, memory_format=memory_format).train()
    discriminator.to(device, memory_format=memory_format).train()
    if world > 1:
        # Same weights on every rank (same seed, and DDP broadcasts rank 0's); each rank
        # then draws its own dropout masks and penalty interpolates.
        torch.manual_seed(seed + 1_000_003 * rank)
    ema = None
    if train_cfg.ema_decay is not None:
        ema = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(train_cfg.ema_decay),
                            use_buffers=True)
    loss = losses.get(train_cfg.loss)
    real_target = 1.0 - train_cfg.label_smoothing
    opt_g = make_optimizer(train_cfg.optimizer, generator.parameters(), train_cfg.lr,
                           train_cfg.betas)
    opt_d = make_optimizer(train_cfg.optimizer, discriminator.parameters(),
                           train_cfg.lr_d or train_cfg.lr, train_cfg.betas)
    steps = train_cfg.steps

    def decay(done: int) -> float:  # lr multiplier after ``done`` G steps
        return 1.0 - done / steps if train_cfg.lr_decay == "linear" else 1.0

    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_g, opt_d)]
    # fp16 needs loss scaling, one scaler per network; disabled scalers are no-ops.
    scalers = [torch.amp.GradScaler(device.type, enabled=precision == "fp16")
               for _ in (opt_g, opt_d)]
    scaler_g, scaler_d = scalers
    batches = DeviceBatches(data["images"], data["labels"], train_cfg.batch_size, seed, device,
                            rank, world)
    noise_gen = torch.Generator(device=device).manual_seed(seed)
    batch = train_cfg.batch_size  # the global batch: each rank keeps its share of the noise
    share = slice(batches.offset, batches.offset + batches.share)
    run_fingerprint = fingerprint(seed, model_cfg, train_cfg, data["images"])
    if world > 1 and resume_path is not None:
        if rank == 0 and Path(resume_path).is_file():
            say(f"train: resuming is not supported with {world} processes; ignoring "
                f"{resume_path} and starting from step 0")
        resume_path = None

    compiled = torch.compile if train_cfg.compile else (lambda module: module)
    # g_run and d_run compute what the optimizers step on (DDP all-reduces their
    # gradients); the plain modules serve the rest: no-grad fakes, D inside the G step (its
    # gradients are discarded) and the gradient penalty (double backward, which neither
    # DDP's reducer nor torch.compile supports).
    g_plain, d_plain = compiled(generator), compiled(discriminator)
    g_run, d_run = g_plain, d_plain
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        g_run = compiled(DistributedDataParallel(generator, device_ids=ids,
                                                 broadcast_buffers=False))
        d_run = compiled(DistributedDataParallel(discriminator, device_ids=ids,
                                                 broadcast_buffers=False))
    amp_dtype = AUTOCAST_DTYPES[precision]
    seeking = train_cfg.mode_seeking > 0

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def noise(paired: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A latent batch and, for conditional models, the classes asked of G; ``paired``
        gives the second half of this rank's batch the first half's classes."""
        z = models.latent_noise(model_cfg.noise, batch, model_cfg.latent_dim, device, noise_gen)
        labels = None
        if model_cfg.conditional:
            labels = torch.randint(num_classes, (batch,), device=device, generator=noise_gen)
        if world > 1:  # every rank draws the global batch's noise, so the union is the same
            z, labels = z[share], labels[share] if labels is not None else None
        if paired and labels is not None:
            first, second = losses.pair_halves(labels.shape[0])
            labels[second] = labels[first]
        return z, labels

    def readout(scores: torch.Tensor) -> torch.Tensor:
        # D(x) as a probability where D outputs logits, else the raw score.
        return torch.sigmoid(scores).mean() if loss.probabilistic else scores.mean()

    def clip(module: nn.Module) -> None:
        if train_cfg.grad_clip is not None:
            nn.utils.clip_grad_value_(module.parameters(), train_cfg.grad_clip)

    # Sums of LOG_KEYS since the last log, kept on the device: reading a loss every step
    # would force a host-device sync per step.
    sums = torch.zeros(len(LOG_KEYS), device=device)
    counted = 0
    history: list[dict[str, float]] = []

    def state(step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": run_fingerprint,
            "config": {"seed": seed, "model": to_dict(model_cfg), "train": to_dict(train_cfg),
                       "image_shape": list(image_shape), "classes": list(data["classes"])},
            "step": step,
            "generator": _cpu_state(generator),
            "generator_ema": _cpu_state(ema.module) if ema is not None else None,
            "ema_averaged": int(ema.n_averaged) if ema is not None else 0,
            "discriminator": _cpu_state(discriminator),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "schedulers": [s.state_dict() for s in schedulers],
            "scalers": [s.state_dict() for s in scalers],
            "batches_drawn": batches.drawn,
            "rng": _rng_state(noise_gen),
            "log_sums": sums.cpu().clone(),
            "log_counted": counted,
            "history": list(history),
        }

    start = 0
    if resume_path is not None and Path(resume_path).is_file():
        saved = _load_resume(Path(resume_path), run_fingerprint, say)
        if saved is not None:
            generator.load_state_dict(saved["generator"])
            discriminator.load_state_dict(saved["discriminator"])
            if ema is not None:
                ema.module.load_state_dict(saved["generator_ema"])
                ema.n_averaged.fill_(saved["ema_averaged"])
            opt_g.load_state_dict(saved["opt_g"])
            opt_d.load_state_dict(saved["opt_d"])
            for sched, sched_state in zip(schedulers, saved["schedulers"], strict=True):
                sched.load_state_dict(sched_state)
            for scaler, scaler_state in zip(scalers, saved.get("scalers", [{}, {}]), strict=True):
                if scaler_state:
                    scaler.load_state_dict(scaler_state)
            batches.drawn = saved["batches_drawn"]
            _set_rng_state(saved["rng"], noise_gen)
            sums.copy_(saved["log_sums"].to(device))
            counted = saved["log_counted"]
            history = list(saved["history"])
            start = saved["step"]
            say(f"train: resuming from step {start} of {steps} ({resume_path})")
            if on_log is not None:  # replay, so the log has no gap and no repeated step
                for record in history:
                    on_log(record["step"], {k: v for k, v in record.items() if k != "step"})

    def save_resume(step: int) -> None:
        if not _all_finite(generator, discriminator):
            raise GanError(f"train: weights are no longer finite at step {step}; the run "
                           f"diverged (try a lower train.lr or another train.loss)")
        save_checkpoint(state(step), Path(resume_path))

    bar = tqdm(range(start + 1, steps + 1), desc="train", unit="step", initial=start,
               total=steps, disable=not progress, dynamic_ncols=True)
    with stop_signals() as received:
        for step in bar:
            # (1) D step(s): minimise d_loss, i.e. raise D on real images, lower it on fakes.
            for _ in range(train_cfg.d_steps):
                real, real_labels = batches.next()
                if memory_format is torch.channels_last:
                    real = real.contiguous(memory_format=memory_format)
                real_labels = real_labels if model_cfg.conditional else None
                z, fake_labels = noise()
                with torch.no_grad(), autocast():
                    fake = g_plain(z, fake_labels)
                with autocast():
                    real_scores = d_run(real, real_labels)
                    fake_scores = d_run(fake, fake_labels)
                # Losses in fp32 (.float() is a no-op there).
                d_loss = loss.d(real_scores.float(), fake_scores.float(), real_target)
                if loss.gradient_penalty:
                    # (||grad D(x_hat)||_2 - 1)^2 at random interpolates (Gulrajani et al.),
                    # in fp32 outside autocast and before loss scaling, so its input
                    # gradient is the true one; its weight gradients are then scaled and
                    # unscaled with the rest of d_loss.
                    d_loss = d_loss + train_cfg.gp_weight * losses.gradient_penalty(
                        discriminator, real, fake.float(), real_labels)
                opt_d.zero_grad(set_to_none=True)
                scaler_d.scale(d_loss).backward()
                if train_cfg.grad_clip is not None:
                    scaler_d.unscale_(opt_d)
                clip(discriminator)
                scaler_d.step(opt_d)  # skipped (and the scale lowered) on inf/nan gradients
                scaler_d.update()

            # (2) G step: minimise g_loss on fresh fakes, through D but updating only G.
            z, fake_labels = noise(paired=seeking)
            with autocast():
                fake = g_run(z, fake_labels)
                g_scores = d_plain(fake, fake_labels)
            g_loss = loss.g(g_scores.float())
            if seeking:
                g_loss = g_loss + train_cfg.mode_seeking * losses.mode_seeking(fake.float(), z)
            opt_g.zero_grad(set_to_none=True)
            scaler_g.scale(g_loss).backward()
            if train_cfg.grad_clip is not None:
                scaler_g.unscale_(opt_g)
            clip(generator)
            scaler_g.step(opt_g)
            scaler_g.update()
            for sched in schedulers:
                sched.step()
            if ema is not None:
                ema.update_parameters(generator)

            real_scores, fake_scores = real_scores.detach().float(), fake_scores.detach().float()
            sums += torch.stack([d_loss.detach(), g_loss.detach(),
                                 readout(real_scores), readout(fake_scores),
                                 (real_scores > loss.threshold).float().mean(),
                                 (fake_scores <= loss.threshold).float().mean()])
            counted += 1
            if step % train_cfg.log_every == 0 or step == steps:
                if world > 1:  # log the global batch's means, the same on every rank
                    dist.all_reduce(sums)
                    sums /= world
                means = (sums / counted).tolist()  # the one host-device sync per log interval
                record = dict(zip(LOG_KEYS, means, strict=True))
                bad = [k for k, v in record.items() if not np.isfinite(v)]
                if bad:
                    raise GanError(f"train: {bad[0]} became {record[bad[0]]} by step {step}; "
                                   f"the run diverged (try a lower train.lr or another "
                                   f"train.loss)")
                history.append({"step": step, **record})
                if on_log is not None:
                    on_log(step, record)
                bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
                sums.zero_()
                counted = 0
            for every, hook in periodic:
                if step % every == 0 or step == steps:
                    shown = ema.module if ema is not None else generator
                    shown.eval()
                    with torch.random.fork_rng(devices=_cuda_devices(device)):
                        metrics = hook(step, shown)
                    shown.train()
                    if metrics:
                        history.append({"step": step, **metrics})
                        if on_log is not None:
                            on_log(step, metrics)
            if resume_path is not None:
                if received:
                    save_resume(step)
                    raise Interrupted(f"train: interrupted at step {step} of {steps}; state "
                                      f"saved to {resume_path}; run the same command (or dvc "
                                      f"repro) again to resume")
                if train_cfg.checkpoint_every and step % train_cfg.checkpoint_every == 0 \
                        and step < steps:
                    save_resume(step)
            elif received:
                raise Interrupted(f"train: interrupted at step {step} of {steps}")

    if not _all_finite(generator, discriminator):
        raise GanError(f"train: weights are no longer finite at step {steps}; the run "
                       f"diverged (try a lower train.lr or another train.loss)")
    generator.eval()
    discriminator.eval()
    shown = ema.module.eval() if ema is not None else generator
    return TrainResult(shown, discriminator, state(steps), history, start)


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        # weights_only=False: the checkpoint holds Python/NumPy RNG states. Only files this
        # project wrote are read here.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise GanError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GanError(f"{path}: not a checkpoint of this project (format "
                       f"{CHECKPOINT_FORMAT} expected)")
    return ckpt


def _load_resume(path: Path, expected: str, say: Callable[[str], None]) -> dict | None:
    """The saved state at ``path`` if it was made by the same configuration, else None."""
    try:
        saved = _read_checkpoint(path)
    except GanError as exc:
        say(f"train: ignoring {path}: {str(exc).split(': ', 1)[-1]}; starting from step 0")
        return None
    if saved.get("fingerprint") != expected:
        say(f"train: ignoring {path}: it was made with other params or data; starting "
            f"from step 0")
        return None
    return saved


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_generator(path: Path, device: torch.device | None = None,
                   prefer_ema: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild a checkpoint's generator (its EMA copy when there is one) from the file alone.

    Returns (G in eval mode, the run's config).
    """
    path = Path(path)
    if not path.is_file():
        raise GanError(f"{path}: checkpoint not found; run the train stage (dvc repro train)")
    ckpt = _read_checkpoint(path)
    cfg = ckpt["config"]
    model_cfg = build_config(ModelConfig, cfg["model"], "model")
    generator, _ = models.build(model_cfg, tuple(cfg["image_shape"]), len(cfg["classes"]))
    weights = ckpt["generator"]
    if prefer_ema and ckpt.get("generator_ema") is not None:
        weights = ckpt["generator_ema"]
    try:
        generator.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GanError(f"{path}: generator weights do not fit model.arch "
                       f"{model_cfg.arch!r} ({first})") from None
    generator.to(device or torch.device("cpu")).eval()
    return generator, cfg
