"""The training loop: set a run up, then step, log, call the hooks and save, step by step.

The step's maths lives in gan.step (``GanStep``), what it carries from step to step in
gan.state (``TrainingState``), the periodic hooks' interface in gan.hooks. Here: the
run's fingerprint, one digest per named part, so that a resumable state from another run
is told apart and the line that ignores it says what differs; stopping on SIGINT/SIGTERM
between steps; and ``train()`` itself.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from gan import checkpoint, io, runtime, store, validate
from gan.config import ModelConfig, TrainConfig, to_record
from gan.errors import GanError, Interrupted
from gan.hooks import Hook, due
from gan.io import read_checkpoint, save_checkpoint
from gan.progress import progress as show_progress
from gan.state import Networks, Placement, TrainingState, build_state, place
from gan.step import LOG_KEYS, GanStep

# Train keys that may change between an interrupted run and its resumption without altering
# the result: the device, precision and memory format as asked for (what they resolve to is
# the fingerprint's "device" part).
RESUME_FREE_KEYS = ("device", "precision", "memory_format")
# on_log(step, record): a logged record, by name.
LogFn = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    generator: nn.Module  # the EMA generator when train.ema_decay is set
    discriminator: nn.Module
    checkpoint: dict[str, Any]  # what models/gan.pt holds: the weights and the config
    state: dict[str, Any] | None  # the whole resumable state at the last step (rank 0 only)
    history: list[dict[str, float]] = field(default_factory=list)  # every logged record
    resumed_from: int = 0
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", *LOG_KEYS}
    store_path: Path | None = None  # the run's state in the resume store (gan.store)


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
    train_dict = {k: v for k, v in to_record(train_cfg).items() if k not in RESUME_FREE_KEYS}
    images, labels = data["images"], data["labels"]
    data_digest = hashlib.sha256(json.dumps([list(data["classes"]), list(images.shape),
                                             str(images.dtype), str(labels.dtype)]).encode())
    data_digest.update(images.contiguous().cpu().numpy().tobytes())
    data_digest.update(labels.contiguous().cpu().numpy().tobytes())
    layout = "channels_last" if where.memory_format is torch.channels_last else "contiguous"
    processes = f"{where.world} process" + ("es" if where.world > 1 else "")
    parts = {
        "params": _digest([seed, to_record(model_cfg), train_dict]),
        "data": data_digest.hexdigest(),
        "device": f"{where.device.type}, {where.precision}, {layout}, {processes}",
        "torch": str(torch.__version__),  # a plain str: TorchVersion is no weights_only type
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


def _load_resume(path: Path, parts: dict[str, str], world: int, steps: int,
                 say: Callable[[str], None]) -> dict | None:
    """The saved state at ``path`` if this very run made it, else None (and one line why)."""
    if path.is_symlink():  # a state is never read through a link (out of a shared store)
        say(f"train: ignoring {path}: a symbolic link, which is never followed; starting "
            f"from step 0")
        return None
    try:
        # As data, never as code: a crafted pickle cannot run anything here.
        saved = read_checkpoint(path, checkpoint.FORMAT)
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
    step = saved.get("step")
    if type(step) is not int or not 0 <= step <= steps:
        say(f"train: ignoring {path}: its step {step!r} does not fit a run of {steps} steps; "
            f"starting from step 0")
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


def _resume(state: TrainingState, paths: Sequence[Path], on_log: LogFn | None,
            say: Callable[[str], None]) -> None:
    """Load the latest state this very run saved at one of ``paths`` (the workspace's file,
    the resume store's) into ``state``, then replay its log to ``on_log`` so the log has no
    gap and no repeated step."""
    found = [(saved, path) for path in paths if path.is_file() or path.is_symlink()
             for saved in [_load_resume(path, state.fingerprint, state.where.world,
                                        state.train_cfg.steps, say)]
             if saved is not None]
    if not found:
        return
    saved, path = max(found, key=lambda pair: pair[0]["step"])
    try:
        state.load_state_dict(saved)
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GanError(f"train: {path} does not fit this run ({first}); delete it to start "
                       f"from step 0") from None
    say(f"train: resuming from step {state.step} of {state.train_cfg.steps} ({path})")
    if on_log is not None:
        for record in state.history:
            on_log(record["step"], {k: v for k, v in record.items() if k != "step"})


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


def _save(state: TrainingState, paths: Sequence[Path], kept: Path | None) -> list[Path]:
    """Write the resumable state to each of ``paths`` (rank 0; every rank must call this);
    the paths to write next time. A store that cannot take it (full, read-only) is dropped
    with one warning: the run goes on, its state kept in the workspace."""
    _check_finite(state.nets, state.step)
    saved = state.state_dict()
    if saved is None:
        return list(paths)
    left = []
    for path in paths:
        try:
            save_checkpoint(saved, path)
        except GanError as exc:
            if path != kept:
                raise
            print(f"warning: resume.store: {exc}; training goes on, its state saved in the "
                  f"workspace only", file=sys.stderr)
            continue
        left.append(path)
    return left


def _interrupted(step: int, steps: int, path: Path | None) -> Interrupted:
    if path is None:
        return Interrupted(f"train: interrupted at step {step} of {steps}")
    return Interrupted(f"train: interrupted at step {step} of {steps}; state saved to {path}; "
                       f"run the same command (or dvc repro) again to resume")


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    seed: int,
    data: dict,
    on_log: LogFn | None = None,
    hooks: Sequence[Hook] = (),
    resume_path: Path | None = None,
    checkpoint_every: int = 500,
    progress: bool = True,
    say: Callable[[str], None] = print,
    fingerprint_parts: dict[str, Any] | None = None,
    resume_store: Path | None = None,
    store_keep: int = 20,
) -> TrainResult:
    """Train a GAN on ``data`` (a prepared split) and return the networks and a checkpoint.

    ``on_log(step, record)`` receives the means of LOG_KEYS every ``log_every`` steps and
    the metrics of the hooks that return some. With ``resume_path``, state is saved there
    every ``checkpoint_every`` steps (0: never) and on SIGINT/SIGTERM, and a file whose
    fingerprint matches resumes the run; ``fingerprint_parts`` adds the caller's parts to
    the fingerprint (see ``fingerprint``). With ``resume_store`` the state is also saved to
    that folder under the fingerprint's name (gan.store; at most ``store_keep`` states kept)
    and resumed from there, so it outlives the workspace. Under torchrun every rank calls
    this: each reads the files and takes its own part, rank 0 alone writes them and speaks.
    """
    where = place(model_cfg, train_cfg)
    say = say if where.rank == 0 else (lambda _: None)
    runtime.set_deterministic(train_cfg.deterministic)
    runtime.seed_everything(seed)
    validate.check_run(model_cfg, train_cfg, data["images"].shape[-1])
    parts = fingerprint(seed, model_cfg, train_cfg, data, where, fingerprint_parts)
    state = build_state(model_cfg, train_cfg, seed, data, where, LOG_KEYS, hooks, parts)
    gan_step = GanStep(model_cfg, train_cfg, state.nets, state.opts, where, state.augment)
    kept = None
    if resume_store is not None:
        store.open_store(resume_store)
        kept = store.state_path(resume_store, parts)
    paths = [Path(p) for p in (resume_path, kept) if p is not None]
    writes = list(paths)
    _resume(state, paths, on_log, say)
    start, steps = state.step, train_cfg.steps
    _check_same_start(start, where, resume_path)

    bar = show_progress(range(start + 1, steps + 1), desc="train", unit="step",
                        initial=start, total=steps, enabled=progress)
    with stop_signals() as received, ExitStack() as held:
        if kept is not None and where.rank == 0:  # one trainer per stored state
            held.enter_context(io.exclusive(kept, "a train stage"))
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
            scheduled = bool(checkpoint_every) and step % checkpoint_every == 0 and step < steps
            if paths and (stop or scheduled):
                writes = _save(state, writes, kept)  # a collective with several ranks
                if kept in writes and where.rank == 0:
                    store.prune(resume_store, store_keep, kept)
            if stop:
                stop_asked.barrier()  # no rank leaves before rank 0 has written the state
                raise _interrupted(step, steps, resume_path)

    _check_finite(state.nets, steps)
    generator = state.shown_at(steps)  # before the state, which holds the EMA G's statistics
    final = state.state_dict()
    state.nets.generator.eval()
    state.nets.discriminator.eval()
    return TrainResult(generator, state.nets.discriminator, state.weights(), final,
                       state.history, start, list(state.losses), kept)
