"""Stage train: fit the GAN variant of params.yaml and write its checkpoint and log.

With train.devices > 1 or train.nodes > 1 (and no torchrun around it) the stage relaunches
itself under torchrun: standalone on one machine, else as one of train.nodes agents that
meet at $GAN_RDZV_ENDPOINT (c10d rendezvous; docs/multinode.md). Under torchrun every rank
trains and resumes, and rank 0 alone writes the outputs.
"""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.train ... (dvc repro runs them so)")

import os
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from gan.errors import GanError, Interrupted
from gan.sections import load_section, load_seed
from gan.sections.evaluate import EvaluateConfig
from gan.sections.model import ModelConfig
from gan.sections.resume import ResumeConfig
from gan.sections.train import TrainConfig
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder of prepared splits")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--log-dir", type=Path, required=True, help="dvclive folder")
    p.add_argument("--resume", type=Path, required=True,
                   help="resumable state, saved every resume.checkpoint_every steps")
    p.add_argument("--evolution", type=Path, help="folder of snapshot grids (none if omitted)")
    p.add_argument("--classifier", type=Path, help="classifier for the FID every "
                   "train.eval_every steps")
    args, params = common.start("train", p)
    from gan import numerics, runtime, validate

    seed = load_seed(params)
    model_cfg = load_section(params, ModelConfig)
    train_cfg = load_section(params, TrainConfig)
    resume_cfg = load_section(params, ResumeConfig)
    validate.check_run(model_cfg, train_cfg)  # before any data is read
    if (train_cfg.devices > 1 or train_cfg.nodes > 1) and "WORLD_SIZE" not in os.environ:
        sys.exit(relaunch(torchrun_args(train_cfg.devices, train_cfg.nodes), train_cfg.nodes))
    # only evaluate.train_fid_samples is read: see dvc.yaml
    eval_cfg = load_section(params, EvaluateConfig) if train_cfg.eval_every > 0 else None
    with runtime.process_group(train_cfg.device) as rank:
        try:
            fit(args, seed, model_cfg, train_cfg, eval_cfg, resume_cfg,
                numerics.config(params), rank)
        except Interrupted:
            if rank == 0:
                raise
            sys.exit(130)  # rank 0 says it


# Seconds the agents of a several-machine run wait for each other before giving up, unless
# $GAN_RDZV_TIMEOUT says otherwise (torchrun's own default, 600 s, is silent all along).
RDZV_TIMEOUT = 300


def rdzv_timeout() -> int:
    """$GAN_RDZV_TIMEOUT (whole seconds), else RDZV_TIMEOUT."""
    text = os.environ.get("GAN_RDZV_TIMEOUT", "") or str(RDZV_TIMEOUT)
    if not text.strip().isdigit() or not 1 <= int(text) <= 86400:
        raise GanError(f"$GAN_RDZV_TIMEOUT: got {text!r}, expected whole seconds from 1 to "
                       "86400")
    return int(text)


def torchrun_args(devices: int, nodes: int) -> list[str]:
    """torchrun's options for ``devices`` processes on each of ``nodes`` machines."""
    if nodes == 1:
        return ["--standalone", f"--nproc_per_node={devices}"]
    endpoint = os.environ.get("GAN_RDZV_ENDPOINT", "")
    host, _, port = endpoint.rpartition(":")
    # A name or IPv4 address has no ':' or brackets; an IPv6 address is all in brackets.
    bare = host.removeprefix("[").removesuffix("]")
    bracketed = host.startswith("[") and host.endswith("]")
    if not bare or not port.isdigit() or "[" in bare or "]" in bare or (
            ":" in bare and not bracketed) or (bracketed and ":" not in bare) or (
            host.startswith("[") != host.endswith("]")):
        raise GanError(f"train.nodes: {nodes} machines meet at $GAN_RDZV_ENDPOINT, which must "
                       f"be HOST:PORT of one of them, an IPv6 host in brackets ([::1]:29500) "
                       f"(got {endpoint!r}); see docs/multinode.md")
    if not 1 <= int(port) <= 65535:
        raise GanError(f"$GAN_RDZV_ENDPOINT: port {port} of {endpoint!r} is not a TCP port "
                       "(1 to 65535)")
    try:
        socket.getaddrinfo(bare, int(port))
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise GanError(f"$GAN_RDZV_ENDPOINT: host {host!r} cannot be resolved ({reason}); "
                       "name a machine of the run") from None
    run_id = os.environ.get("GAN_RDZV_ID", "gan-train")
    return [f"--nnodes={nodes}", f"--nproc_per_node={devices}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id={run_id}",
            f"--rdzv-conf=join_timeout={rdzv_timeout() + 60}"]  # this stage gives up first


def start_child(argv: list[str]) -> subprocess.Popen:
    """Start ``argv`` as this stage's child, sent SIGTERM when this stage dies, even by
    SIGKILL (Linux's PR_SET_PDEATHSIG), so no torchrun agent is left holding its port."""
    import ctypes

    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):  # not Linux: the agent outlives a killed stage
        return subprocess.Popen(argv)

    def die_with_parent() -> None:
        prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the stage died before that call
            os.kill(os.getpid(), signal.SIGTERM)

    return subprocess.Popen(argv, preexec_fn=die_with_parent)  # noqa: PLW1509


def _trains(child: subprocess.Popen) -> bool:
    """Whether one of ``child``'s processes runs stages.train: the rendezvous is over."""
    import psutil

    try:
        return any("stages.train" in proc.cmdline()
                   for proc in psutil.Process(child.pid).children(recursive=True))
    except psutil.Error:
        return False


def supervise(child: subprocess.Popen, seconds: float | None, what: str) -> int:
    """Wait for ``child``; with ``seconds``, end it and raise one GanError if none of its
    processes trains by then (``what``: what it waits for)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while deadline is not None and child.poll() is None and not _trains(child):
        if time.monotonic() > deadline:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise GanError(f"train.nodes: gave up after {seconds:g} s waiting for {what} "
                           "($GAN_RDZV_TIMEOUT); start the stage on every machine, with the "
                           "same $GAN_RDZV_ENDPOINT and $GAN_RDZV_ID")
        time.sleep(0.5)
    return child.wait()


def relaunch(options: list[str], nodes: int = 1) -> int:
    """Run this stage again under torchrun with ``options``; its exit code.

    SIGINT and SIGTERM are passed on to torchrun, which passes them to every rank; the ranks
    then agree on a step, save it and stop. With several machines the wait for the others
    is said, and ends after $GAN_RDZV_TIMEOUT seconds.
    """
    child = start_child([sys.executable, "-m", "torch.distributed.run", *options,
                         "-m", "stages.train", *sys.argv[1:]])
    forwarded = []

    def forward(signum, _frame):
        forwarded.append(signum)
        child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    seconds, what = None, ""
    if nodes > 1:
        endpoint = os.environ.get("GAN_RDZV_ENDPOINT", "")
        seconds, what = rdzv_timeout(), f"the {nodes} machines of the run at {endpoint}"
        print(f"train: waiting up to {seconds:g} s for {what} ($GAN_RDZV_TIMEOUT)",
              file=sys.stderr, flush=True)
    code = supervise(child, seconds, what)
    return 130 if forwarded and code != 0 else code


def fit(args, seed, model_cfg, train_cfg, eval_cfg, resume_cfg, numerics_cfg,
        rank: int = 0) -> None:
    """Train on every rank; rank 0 also checks and writes the outputs.

    What differs between ranks is decided here, and only here. Every rank trains its share of
    each batch and reads its own part of a saved state (its RNG states and batch-norm
    buffers), so every rank gets the same data and the same Resume. Rank 0 alone writes
    files and speaks: it checks the output folders, takes the lock, runs the hooks
    (snapshots and FIDs, which would be written or computed once per rank otherwise), logs
    to dvclive, shows progress and writes the checkpoint; train.train has it alone write the
    state. What is done for the resumable state is gan.resume's: this stage's parts of the
    run's fingerprint (``stage_parts``), the resume store's checks and the lock (``claim``).
    """
    # Every module the stage runs, on every rank, before its code goes into the fingerprint
    # (resume.stage_parts): _hooks' too, which rank 0 alone calls.
    from dvclive import Live

    from gan import classifier, data, io, metrics, resume, train  # noqa: F401
    from gan.checkpoint import save_checkpoint
    from gan.hooks import Every  # noqa: F401

    judge = args.classifier if train_cfg.eval_every > 0 else None
    state_files = resume.Resume.from_params(resume_cfg, args.resume, resume.stage_parts(
        numerics_cfg, judge, eval_cfg.train_fid_samples if judge is not None else None))
    with ExitStack() as locked:
        if rank == 0:
            outputs = [p for p in (args.checkpoint.parent, args.log_dir, args.evolution) if p]
            for folder in outputs:
                io.check_writable(folder)
            locked.enter_context(state_files.claim(outputs))
        train_data = data.load_prepared(args.data, "train")
        hooks, log = (), None
        with ExitStack() as logging:
            if rank == 0:
                hooks = _hooks(args, seed, model_cfg, train_cfg, eval_cfg, train_data)
                # dvcyaml=False: dvc.yaml declares the plots itself; letting dvclive rewrite
                # it drops and duplicates entries. A resumed run replays its saved log into
                # the fresh folder.
                live = logging.enter_context(Live(str(args.log_dir), dvcyaml=False,
                                                  save_dvc_exp=False))

                def log(step: int, record: dict[str, float]) -> None:
                    live.step = step
                    for name, value in record.items():
                        live.log_metric(name, value)
                    live.make_summary()

            start = time.perf_counter()
            result = train.train(model_cfg, train_cfg, seed, train_data, state_files,
                                 on_log=log, hooks=hooks, progress=rank == 0)
            seconds = time.perf_counter() - start
        if rank != 0:
            return
        save_checkpoint(result.checkpoint, args.checkpoint)
        result.files.finished()  # the checkpoint supersedes the saved states
    last = result.losses[-1]
    # The time goes to stdout only: in a tracked output it would break byte-for-byte repro.
    done = train_cfg.steps - result.resumed_from
    print(f"train: {train_cfg.steps} steps of {model_cfg.arch}/{train_cfg.loss}, final "
          f"D loss {last['d_loss']:.3f}, G loss {last['g_loss']:.3f} -> {args.checkpoint} "
          f"({done} steps in {seconds:.0f} s, {done / seconds:.1f} steps/s)")


def _hooks(args, seed, model_cfg, train_cfg, eval_cfg, train_data) -> list:
    """Rank 0's periodic hooks: snapshot grids and the FID during training."""
    from gan import classifier, data, metrics
    from gan.hooks import Every, EvolutionSnapshots

    hooks = []
    if args.evolution and train_cfg.snapshot_every:
        hooks.append(EvolutionSnapshots(train_cfg.snapshot_every, args.evolution, seed,
                                        model_cfg, len(train_data["classes"])))
    elif args.evolution:
        args.evolution.mkdir(parents=True, exist_ok=True)  # DVC wants the output, even empty
    if train_cfg.eval_every > 0:
        if args.classifier is None:
            raise GanError("train.eval_every: the FID during training needs --classifier")
        judge, judge_cfg = classifier.load_classifier(args.classifier)
        classifier.check_compatible(judge_cfg, args.classifier, training_images=(
            train_data["images"].shape[1:], train_data["classes"]))
        fid_of = metrics.training_fid(
            judge, data.load_prepared(args.data, "test")["images"],
            eval_cfg.train_fid_samples, model_cfg, len(train_data["classes"]), seed)
        # Logged as "fid" at that step, and replayed on resume.
        hooks.append(Every(train_cfg.eval_every, lambda step, g: {"fid": fid_of(g)}, "fid",
                           metrics=True))
    return hooks


if __name__ == "__main__":
    common.run(main)
