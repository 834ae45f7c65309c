"""The ``gan-queue`` command line: its parser, ``status``, and one-line errors."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

from gan import dvc_internals as dvc
from gan.errors import GanError
from gan.queue.params import differs, read_params
from gan.queue.read import classify
from gan.queue.retry import retry_command
from gan.queue.store import store_command


def status_command(repo, args: argparse.Namespace) -> int:
    """One line per experiment: name, stash rev, state, the params that differ."""
    entries = classify(dvc.experiment_queue(repo))
    if not entries:
        print("gan-queue: no experiments in the queue")
        return 0
    files = dvc.params_paths(repo)
    workspace = read_params(repo, None, files)
    width = max(len(item.name) for item in entries)
    for item in entries:
        line = f"{item.name:<{width}}  {item.rev[:7]}  {item.state:<7}  "
        line += differs(repo, item.rev, workspace, files) or "(the workspace's params)"
        print(line + (f"  [{item.why}]" if item.why else ""))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gan-queue", epilog="Details: docs/experiments.md",
                                description="Re-run what failed or died in DVC's experiment "
                                            "queue (dvc exp run --queue), and show its state.")
    sub = p.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="one line per experiment of the queue: name, "
                            "stash rev, queued/running/success/failed/dead, params that "
                            "differ from the workspace")
    status.set_defaults(func=status_command)
    retry = sub.add_parser("retry", help="re-queue every failed or dead experiment with its "
                           "own commit and params, then start the queue")
    retry.add_argument("-j", "--jobs", type=int, default=1,
                       help="queue workers to start, as dvc queue start -j (default 1)")
    retry.add_argument("--no-start", action="store_true",
                       help="re-queue only, for workers already running or started later "
                            "with dvc queue start")
    retry.add_argument("--wait", action="store_true",
                       help="wait until nothing is queued or running; exit 1 if a retried "
                            "experiment fails or dies again")
    retry.add_argument("--timeout", type=float, default=None,
                       help="--wait: give up after this many seconds (exit 2)")
    retry.set_defaults(func=retry_command)
    kept = sub.add_parser("store", help="the resume store: the training states kept outside "
                          "every workspace, by run (docs/resume.md)")
    kept.add_argument("--clean", action="store_true",
                      help="delete every state no running train stage holds")
    kept.add_argument("--params", type=Path, default=Path("params.yaml"),
                      help="its resume.store says where the store is (default: params.yaml)")
    kept.set_defaults(func=store_command)
    return p


def broken_record(root: str | None) -> Path | None:
    """The first file of DVC's queue under ``root`` (its messages and results, JSON with a
    base64 body for messages) that does not parse, if any."""
    folder = dvc.queue_folder(root)
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file() or path.name.endswith(".lock"):
            continue
        try:
            record = json.loads(path.read_bytes())
            if isinstance(record, dict) and "body" in record:
                json.loads(base64.b64decode(record["body"], validate=True))
        except (OSError, ValueError, TypeError):
            return path
    return None


def _record_error(exc: Exception, root: str | None) -> str:
    """One line for an OSError or a record that does not decode while reading DVC's queue."""
    first = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    if isinstance(exc, NotADirectoryError | FileExistsError) and exc.filename:
        path = Path(exc.filename)
        while not path.exists() and path != path.parent:
            path = path.parent  # the file in the way
        return (f"{path}: a file where DVC keeps its queue's folders ({dvc.EXPS_DIR}); move "
                "it away")
    if isinstance(exc, OSError):
        return f"{exc.filename or 'DVC queue'}: {exc.strerror or first}"
    broken = broken_record(root)
    where = f"{broken}: a broken record of DVC's queue" if broken else "DVC's queue records"
    return (f"{where} ({type(exc).__name__}: {first}); remove it (one experiment's message or "
            "result) and run gan-queue again")


def main(argv: list[str] | None = None) -> int:
    """The console script: one-line errors and exit code 2 for what the user can fix, 130
    for Ctrl-C."""
    args = _parser().parse_args(argv)
    dvc.quiet_logging()
    said, records = dvc.dvc_errors(), dvc.broker_errors()
    root = None
    try:
        with dvc.open_repo("gan-queue") as repo:
            root = repo.root_dir
            return args.func(repo, args)
    except KeyboardInterrupt:
        print("gan-queue: interrupted; what it queued stays queued (gan-queue status)",
              file=sys.stderr)
        return 130
    except (GanError, *said, OSError, ValueError, *records) as exc:
        if os.environ.get("GAN_DEBUG") == "1":
            raise
        if isinstance(exc, (GanError, *said)):
            line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            line = _record_error(exc, root)
        print(f"error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
