"""The training loop: set a run up, then step, log, call the hooks and save, step by step.

The step's maths lives in gan.step (``GanStep``), what it carries from step to step in
gan.state (``TrainingState``), the periodic hooks' interface in gan.hooks, resume (the
fingerprint, the state files, when to save) in gan.resume. Here: stopping on SIGINT/SIGTERM
between steps, and ``train()`` itself.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from gan import runtime, validate
from gan.errors import GanError
from gan.hooks import Hook, due
from gan.progress import progress as show_progress
from gan.resume import LogFn, Resume, StateFiles
from gan.sections.model import ModelConfig
from gan.sections.train import TrainConfig
from gan.state import Networks, TrainingState, build_state, place
from gan.step import LOG_KEYS, GanStep


@dataclass
class TrainResult:
    generator: nn.Module  # the EMA generator when train.ema_decay is set
    discriminator: nn.Module
    checkpoint: dict[str, Any]  # what models/gan.pt holds: the weights and the config
    state: dict[str, Any] | None  # the whole resumable state at the last step (rank 0 only)
    history: list[dict[str, float]] = field(default_factory=list)  # every logged record
    resumed_from: int = 0
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", *LOG_KEYS}
    files: StateFiles | None = None  # where the run's state was saved (gan.resume)


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


def _all_finite(*modules: nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for m in modules for p in m.parameters()]
    return bool(torch.stack(flags).all())  # one sync for all tensors


def _check_finite(nets: Networks, step: int) -> None:
    if not _all_finite(nets.generator, nets.discriminator):
        raise GanError(f"train: weights are no longer finite at step {step}; the run "
                       f"diverged (try a lower train.lr or another train.loss)")


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


def _log(state: TrainingState, on_log: LogFn | None) -> dict[str, float]:
    """Take the means since the last log, check them and hand them on; returns them."""
    step = state.step
    record = state.log.take(state.where.world)
    bad = [k for k, v in record.items() if not np.isfinite(v)]
    if bad:
        raise GanError(f"train: {bad[0]} became {record[bad[0]]} by step {step}; the run "
                       f"diverged (try a lower train.lr or another train.loss)")
    state.losses.append({"step": step, **record})
    if on_log is not None:
        on_log(step, record)
    return record


def _run_hooks(state: TrainingState, hooks: Sequence[Hook], on_log: LogFn | None) -> None:
    """Call the hooks due at this step with the shown generator, under a forked RNG."""
    step = state.step
    for hook in hooks:
        if not due(hook, step, state.train_cfg.steps):
            continue
        shown = state.shown_at(step)
        with torch.random.fork_rng(devices=runtime.cuda_devices(state.where.device)):
            metrics = hook(step, shown)
        shown.train()
        if hook.metrics and metrics:
            state.metrics.append({"step": step, **metrics})
            if on_log is not None:
                on_log(step, metrics)


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    seed: int,
    data: dict,
    resume: Resume | None = None,
    on_log: LogFn | None = None,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> TrainResult:
    """Train a GAN on ``data`` (a prepared split) and return the networks and a checkpoint.

    ``resume`` says where the resumable state is saved and found (gan.resume; None: nowhere,
    the run starts from step 0 and saves none). ``on_log(step, record)`` receives the means
    of LOG_KEYS every ``log_every`` steps and the metrics of the hooks that return some.
    Under torchrun every rank calls this the same way: each trains its share and reads its
    own part of a saved state; rank 0 alone writes the state and speaks (the caller decides
    which rank logs and runs hooks: stages/train.py).
    """
    where = place(model_cfg, train_cfg)
    say = say if where.rank == 0 else (lambda _: None)
    runtime.set_deterministic(train_cfg.deterministic)
    runtime.seed_everything(seed)
    validate.check_run(model_cfg, train_cfg, data["images"].shape[-1])
    files = (resume or Resume()).open(seed, model_cfg, train_cfg, data, where)
    state = build_state(model_cfg, train_cfg, seed, data, where, LOG_KEYS, hooks,
                        files.fingerprint)
    gan_step = GanStep(model_cfg, train_cfg, state.nets, state.opts, where, state.augment)
    files.restore(state, on_log, say)
    start, steps = state.step, train_cfg.steps

    bar = show_progress(range(start + 1, steps + 1), desc="train", unit="step",
                        initial=start, total=steps, enabled=progress)
    with stop_signals() as received, files.held():
        stop_asked = StopVote(received, where.world)
        for step in bar:
            state.step = step
            # (1) D step(s), (2) G step, EMA update: gan.step.GanStep.
            state.log.add(gan_step(state.batches, state.noise))
            # (3) Log, run the periodic hooks, save the resumable state.
            if step % train_cfg.log_every == 0 or step == steps:
                record = _log(state, on_log)
                bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
            _run_hooks(state, hooks, on_log)
            stop = stop_asked()  # the same answer on every rank
            if files.due(step, steps, stop):
                _check_finite(state.nets, step)
                files.save(state)  # a collective with several ranks
            if stop:
                stop_asked.barrier()  # no rank leaves before rank 0 has written the state
                raise files.interrupted(step, steps)

    _check_finite(state.nets, steps)
    generator = state.shown_at(steps)  # before the state, which holds the EMA G's statistics
    final = state.state_dict()
    state.nets.generator.eval()
    state.nets.discriminator.eval()
    return TrainResult(generator, state.nets.discriminator, state.weights(), final,
                       state.history, start, list(state.losses), files)
