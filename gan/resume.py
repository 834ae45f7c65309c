"""Resume, whole: what the resumable state is, where it is kept, when it is saved, and
which saved state a run may continue.

Words: the *state* is everything training carries from one step to the next
(``gan.state.TrainingState.state_dict``: weights, optimizers, schedules, gradient scalers,
RNG states, data position, the log so far), written as a *state file* of STATE_FORMAT. The
*checkpoint* (or model file) is ``models/gan.pt``, what sampling and evaluation read
(gan.checkpoint, its own format). A state holds a checkpoint's keys and more.

Where: the workspace's state file (``.resume/train.pt``), and the resume store (gan.store),
a folder outside every workspace where the state is kept under its run's key (``store_key``)
so that it outlives a queued experiment's temporary workspace.

When: every ``resume.checkpoint_every`` steps and on SIGINT/SIGTERM; a finished run
deletes both (``StateFiles.finished``).

Which: only the very run that saved it. Its ``fingerprint`` (one digest per part: params,
data, code, numerics, device, torch) must equal this run's, else one line says what
differs and the run starts from step 0. The code part comes from ``code_files`` of
FIRST_PARTY, the same packages tests/test_code_deps.py holds dvc.yaml's deps to.

The train stage makes one ``Resume`` (the settings) with its own parts of the fingerprint
(``stage_parts``: its code, numerics and judge) and holds its state with ``Resume.claim``
before it reads any data (the store's checks, the folders, the lock); ``train.train`` calls
``Resume.open`` for the run's ``StateFiles``. docs/resume.md tells the user's side.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import distributed as dist

from gan import io, store
from gan.errors import GanError, Interrupted
from gan.sections import to_record
from gan.sections.model import ModelConfig
from gan.sections.numerics import NumericsConfig
from gan.sections.resume import ResumeConfig
from gan.sections.train import TrainConfig
from gan.state import STATE_FORMAT

if TYPE_CHECKING:
    from gan.state import Placement, TrainingState

# The packages whose loaded modules are the trainer's code: the fingerprint's code part.
# tests/test_code_deps.py imports this list to hold dvc.yaml's code deps to the same.
FIRST_PARTY = ("gan", "stages")
# Train keys that may change between an interrupted run and its resumption without altering
# the result: the device, precision and memory format as asked for (what they resolve to is
# the fingerprint's "device" part).
RESUME_FREE_KEYS = ("device", "precision", "memory_format")
# on_log(step, record): a logged record, by name (train.train's on_log).
LogFn = Callable[[int, dict[str, float]], None]


# -- the fingerprint: which run a state belongs to ---------------------------------------

def _digest(value: Any) -> str:
    """SHA-256 of bytes, or of the sorted-key JSON of anything else."""
    blob = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def code_files(packages: tuple[str, ...] = FIRST_PARTY) -> dict[str, str]:
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


def mismatch(saved: Any, parts: dict[str, str]) -> str:
    """What differs between a saved state's fingerprint and this run's, in words."""
    if not isinstance(saved, dict):  # a state from before the fingerprint had parts
        return "other params, code or data"
    names = sorted(k for k in saved.keys() | parts.keys() if saved.get(k) != parts.get(k))
    what = "other " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1
                       else names[0] if names else "params")
    if "device" in names:
        what += f" ({saved.get('device')}; this run: {parts['device']})"
    return what


def store_key(parts: dict[str, Any]) -> str:
    """The resume store's name for a run: a digest of its whole fingerprint (32 hex digits,
    the names gan.store owns)."""
    return _digest(parts)[:32]


def store_path(folder: Path, parts: dict[str, Any]) -> Path:
    """Where the resume store at ``folder`` keeps the state of the run ``parts`` names."""
    return Path(folder) / f"{store_key(parts)}{store.SUFFIX}"


def stage_parts(numerics: NumericsConfig, fid_judge: Path | None = None,
                train_fid_samples: int | None = None) -> dict[str, Any]:
    """What the train stage adds to its run's fingerprint: its code (the files of every
    first-party module loaded by now: call it once the stage has imported what it runs) and
    the numerics section (another thread count or mode continues a run with other bits);
    and when FID is logged during training, ``fid_judge`` (the classifier file; None when
    no FID is logged) and evaluate.train_fid_samples."""
    parts = {"code": code_files(FIRST_PARTY),
             "numerics": {"portable": numerics.portable, "threads": numerics.threads}}
    if fid_judge is not None and fid_judge.is_file():
        parts["classifier"] = hashlib.sha256(fid_judge.read_bytes()).hexdigest()
        parts["params"] = {"evaluate.train_fid_samples": train_fid_samples}
    return parts


# -- state files --------------------------------------------------------------------------

def save_state(state: dict[str, Any], path: Path) -> None:
    """Write a state file atomically (a kill leaves the previous one whole)."""
    io.save_torch(state, path)


def read_state(path: Path) -> dict[str, Any]:
    """A state file of STATE_FORMAT, loaded as data (``weights_only``), or one GanError."""
    return io.read_torch(path, STATE_FORMAT, "resume state")


def load(path: Path, parts: dict[str, str], world: int, steps: int,
         say: Callable[[str], None]) -> dict | None:
    """The saved state at ``path`` if this very run made it, else None (and one line why)."""
    if path.is_symlink():  # a state is never read through a link (out of a shared store)
        say(f"train: ignoring {path}: a symbolic link, which is never followed; starting "
            f"from step 0")
        return None
    try:
        saved = read_state(path)
    except GanError as exc:
        say(f"train: ignoring {path}: {str(exc).split(': ', 1)[-1]}; starting from step 0")
        return None
    if saved.get("fingerprint") != parts:
        say(f"train: ignoring {path}: it was made with {mismatch(saved.get('fingerprint'), parts)}"
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


# -- the settings, and one run's files -----------------------------------------------------

@dataclass(frozen=True)
class Resume:
    """How a run saves and finds its state: the settings, the same on every rank.

    ``path``: the workspace's state file (None: none); ``every``: steps between saves (0:
    only on SIGINT/SIGTERM); ``store``/``keep``: the resume store's folder (None: off) and
    how many states it keeps; ``parts``: the caller's fingerprint parts (its code, numerics,
    judge), added to what ``fingerprint`` computes itself.
    """

    path: Path | None = None
    every: int = 500
    store: Path | None = None
    keep: int = 20
    parts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, section: ResumeConfig, path: Path | None,
                    parts: dict[str, Any]) -> Resume:
        """The settings of params.yaml's resume section for the state file ``path``."""
        return cls(path, section.checkpoint_every, store.folder(section.store),
                   section.store_keep, parts)

    def claim(self, outputs: Sequence[Path] = ()) -> AbstractContextManager:
        """The train stage's hold on its state (rank 0, before any data is read): the store
        checked to be one of its own, never the project's folder or one of ``outputs`` (the
        stage's output folders; it deletes states there), entries it did not write said in
        one warning and left alone; the state's and the store's folders checked to take a
        file; then, while the context lasts, the workspace state's lock: one trainer per
        state (a stray process or a second dvc repro would interleave its steps with this
        one's in the same log and state). ``StateFiles.held`` locks the stored state."""
        if self.store is not None:
            avoid = [Path.cwd(), *outputs, *([self.path.parent] if self.path else [])]
            others = store.open_store(self.store, avoid)
            if others:
                print(f"warning: resume.store: {self.store}: {len(others)} entries the store "
                      f"did not write are left alone ({', '.join(others[:3])}"
                      f"{', ...' if len(others) > 3 else ''})", file=sys.stderr)
        for folder in (self.path.parent if self.path else None, self.store):
            if folder is not None:
                io.check_writable(folder)
        if self.path is None:
            return nullcontext()
        return io.exclusive(self.path, "a train stage")

    def open(self, seed: int, model_cfg: ModelConfig, train_cfg: TrainConfig, data: dict,
             where: Placement) -> StateFiles:
        """This run's fingerprint and the files its state goes to (the store made and
        marked if need be: on every rank, and for callers that made no ``claim``)."""
        parts = fingerprint(seed, model_cfg, train_cfg, data, where, self.parts)
        kept = None
        if self.store is not None:
            store.open_store(self.store)
            kept = store_path(self.store, parts)
        return StateFiles(self, parts, where.rank, where.world, kept)


class StateFiles:
    """One run's state files: the workspace's and the store's. Every rank holds one; rank 0
    alone writes (``TrainingState.state_dict`` gives the others None) and prunes."""

    def __init__(self, settings: Resume, parts: dict[str, str], rank: int, world: int,
                 kept: Path | None):
        self.settings, self.fingerprint, self.rank, self.world = settings, parts, rank, world
        self.kept = kept  # the store's file, or None
        self.paths = [p for p in (settings.path, kept) if p is not None]
        self.writes = list(self.paths)  # what the next save writes (a full store drops out)

    def held(self) -> AbstractContextManager:
        """The store's lock for the run (rank 0): one trainer per stored state."""
        if self.kept is None or self.rank != 0:
            return nullcontext()
        return io.exclusive(self.kept, "a train stage")

    def restore(self, state: TrainingState, on_log: LogFn | None,
                say: Callable[[str], None]) -> None:
        """Load the latest state this very run saved at one of the paths into ``state``,
        then replay its log to ``on_log`` so the log has no gap and no repeated step. With
        several processes, refuse to go on unless every rank resumes from one step."""
        found = [(saved, path) for path in self.paths if path.is_file() or path.is_symlink()
                 for saved in [load(path, self.fingerprint, self.world,
                                    state.train_cfg.steps, say)]
                 if saved is not None]
        if found:
            saved, path = max(found, key=lambda pair: pair[0]["step"])
            try:
                state.load_state_dict(saved)
            except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise GanError(f"train: {path} does not fit this run ({first}); delete it to "
                               f"start from step 0") from None
            say(f"train: resuming from step {state.step} of {state.train_cfg.steps} ({path})")
            if on_log is not None:
                for record in state.history:
                    on_log(record["step"], {k: v for k, v in record.items() if k != "step"})
        self._check_same_start(state.step)

    def _check_same_start(self, start: int) -> None:
        if self.world == 1:
            return
        starts = [None] * self.world
        dist.all_gather_object(starts, start)
        if len(set(starts)) > 1:
            raise GanError(f"train: the {self.world} processes would start from different "
                           f"steps ({', '.join(map(str, starts))}); delete "
                           f"{self.settings.path} to start from step 0")

    def due(self, step: int, steps: int, stop: bool) -> bool:
        """Whether to save at ``step``: on a stop, or every ``every`` steps before the last
        (the last step's weights go to the checkpoint instead)."""
        every = self.settings.every
        return bool(self.paths) and (stop or (bool(every) and step % every == 0
                                              and step < steps))

    def save(self, state: TrainingState) -> None:
        """Write the state to every path (a collective with several ranks: every rank calls
        this, rank 0 writes), then prune the store. A store that cannot take it (full,
        read-only) is dropped with one warning: the run goes on, its state kept in the
        workspace."""
        saved = state.state_dict()
        if saved is None:
            return
        left = []
        for path in self.writes:
            try:
                if path == self.kept:
                    store.record(path)  # first: the store prunes only what it recorded
                save_state(saved, path)
            except GanError as exc:
                if path != self.kept:
                    raise
                print(f"warning: resume.store: {exc}; training goes on, its state saved in "
                      f"the workspace only", file=sys.stderr)
                continue
            left.append(path)
        self.writes = left
        if self.kept in left:
            store.prune(self.settings.store, self.settings.keep, self.kept)

    def interrupted(self, step: int, steps: int) -> Interrupted:
        path = self.settings.path
        if path is None:
            return Interrupted(f"train: interrupted at step {step} of {steps}")
        return Interrupted(f"train: interrupted at step {step} of {steps}; state saved to "
                           f"{path}; run the same command (or dvc repro) again to resume")

    def finished(self) -> None:
        """Delete the run's states once its checkpoint is written: it supersedes them."""
        if self.settings.path is not None:
            self.settings.path.unlink(missing_ok=True)
        if self.kept is not None:
            store.remove(self.kept)
