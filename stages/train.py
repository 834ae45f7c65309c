"""Stage train: fit the GAN variant of params.yaml and write its checkpoint and log.

With train.devices > 1 or train.nodes > 1 (and no torchrun around it) the stage relaunches
itself under torchrun: standalone on one machine, else as one of train.nodes agents that
meet at $GAN_RDZV_ENDPOINT (c10d rendezvous; docs/multinode.md). Under torchrun every rank
trains and resumes, and rank 0 alone writes the outputs.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dvclive import Live

from gan import classifier, data, io, metrics, numerics, runtime, store, train, validate
from gan.config import load_section, load_seed, read_params
from gan.errors import GanError, Interrupted
from gan.hooks import Every, EvolutionSnapshots
from gan.io import save_checkpoint
from stages import common

# The packages whose loaded modules are this stage's code (dvc.yaml lists the same files).
FIRST_PARTY = ("gan", "stages")


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
    args = p.parse_args()
    params = read_params(args.params)
    seed = load_seed(params)
    model_cfg = load_section(params, "model")
    train_cfg = load_section(params, "train")
    resume_cfg = load_section(params, "resume")
    validate.check_run(model_cfg, train_cfg)  # before any data is read
    if (train_cfg.devices > 1 or train_cfg.nodes > 1) and "WORLD_SIZE" not in os.environ:
        sys.exit(relaunch(torchrun_args(train_cfg.devices, train_cfg.nodes)))
    # only evaluate.train_fid_samples is read: see dvc.yaml
    eval_cfg = load_section(params, "evaluate") if train_cfg.eval_every > 0 else None
    with runtime.process_group(train_cfg.device) as rank:
        if rank == 0:
            fit(args, seed, model_cfg, train_cfg, eval_cfg, resume_cfg)
            return
        try:  # the other ranks train (and resume) their share and write nothing
            train.train(model_cfg, train_cfg, seed, data.load_prepared(args.data, "train"),
                        resume_path=args.resume, checkpoint_every=resume_cfg.checkpoint_every,
                        progress=False,
                        fingerprint_parts=fingerprint_parts(args, train_cfg, eval_cfg),
                        resume_store=store.folder(resume_cfg.store))
        except Interrupted:
            sys.exit(130)  # rank 0 says it


def torchrun_args(devices: int, nodes: int) -> list[str]:
    """torchrun's options for ``devices`` processes on each of ``nodes`` machines."""
    if nodes == 1:
        return ["--standalone", f"--nproc_per_node={devices}"]
    endpoint = os.environ.get("GAN_RDZV_ENDPOINT", "")
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise GanError(f"train.nodes: {nodes} machines meet at $GAN_RDZV_ENDPOINT, which must "
                       f"be HOST:PORT of one of them (got {endpoint!r}); see docs/multinode.md")
    run_id = os.environ.get("GAN_RDZV_ID", "gan-train")
    return [f"--nnodes={nodes}", f"--nproc_per_node={devices}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id={run_id}"]


def relaunch(options: list[str]) -> int:
    """Run this stage again under torchrun with ``options``; its exit code.

    SIGINT and SIGTERM are passed on to torchrun, which passes them to every rank; the ranks
    then agree on a step, save it and stop.
    """
    child = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *options,
                              "-m", "stages.train", *sys.argv[1:]])
    forwarded = []

    def forward(signum, _frame):
        forwarded.append(signum)
        child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    code = child.wait()
    return 130 if forwarded and code != 0 else code


def fingerprint_parts(args, train_cfg, eval_cfg) -> dict:
    """What this stage adds to the fingerprint of a run: its code (the files of every
    first-party module loaded by now: the import closure of this script, which dvc.yaml
    lists) and, when FID is logged during training, the classifier file and
    evaluate.train_fid_samples. Also the numerics section: another thread count or mode
    continues a run with other bits."""
    portable, threads = numerics.settings(args.params)
    parts = {"code": train.code_files(FIRST_PARTY),
             "numerics": {"portable": portable, "threads": threads}}
    if train_cfg.eval_every > 0 and args.classifier is not None and args.classifier.is_file():
        parts["classifier"] = hashlib.sha256(args.classifier.read_bytes()).hexdigest()
        parts["params"] = {"evaluate.train_fid_samples": eval_cfg.train_fid_samples}
    return parts


def fit(args, seed, model_cfg, train_cfg, eval_cfg, resume_cfg) -> None:
    kept = store.folder(resume_cfg.store)
    for folder in (args.checkpoint.parent, args.log_dir, args.resume.parent, args.evolution,
                   kept):
        if folder is not None:
            io.check_writable(folder)
    # One trainer per state: a second one (a stray process, a second dvc repro) would
    # interleave its steps with the first's in the same log and state.
    with io.exclusive(args.resume, "a train stage"):
        _fit(args, seed, model_cfg, train_cfg, eval_cfg, resume_cfg)


def _fit(args, seed, model_cfg, train_cfg, eval_cfg, resume_cfg) -> None:
    train_data = data.load_prepared(args.data, "train")
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

    # dvcyaml=False: dvc.yaml declares the plots itself; letting dvclive rewrite it drops
    # and duplicates entries. A resumed run replays its saved log into the fresh folder.
    with Live(str(args.log_dir), dvcyaml=False, save_dvc_exp=False) as live:
        def log(step: int, record: dict[str, float]) -> None:
            live.step = step
            for name, value in record.items():
                live.log_metric(name, value)
            live.make_summary()

        start = time.perf_counter()
        result = train.train(model_cfg, train_cfg, seed, train_data, on_log=log,
                             hooks=hooks, resume_path=args.resume,
                             checkpoint_every=resume_cfg.checkpoint_every,
                             fingerprint_parts=fingerprint_parts(args, train_cfg, eval_cfg),
                             resume_store=store.folder(resume_cfg.store),
                             store_keep=resume_cfg.store_keep)
        seconds = time.perf_counter() - start
    save_checkpoint(result.checkpoint, args.checkpoint)
    args.resume.unlink(missing_ok=True)  # finished: the checkpoint supersedes it
    if result.store_path is not None:
        store.remove(result.store_path)
    last = result.losses[-1]
    # The time goes to stdout only: in a tracked output it would break byte-for-byte repro.
    done = train_cfg.steps - result.resumed_from
    print(f"train: {train_cfg.steps} steps of {model_cfg.arch}/{train_cfg.loss}, final "
          f"D loss {last['d_loss']:.3f}, G loss {last['g_loss']:.3f} -> {args.checkpoint} "
          f"({done} steps in {seconds:.0f} s, {done / seconds:.1f} steps/s)")


if __name__ == "__main__":
    common.run(main)
