"""gan-queue's verdict on running experiments, on process tables made up here: which ones no
live worker will finish (dead), and which stay running because nothing proves it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gan import dvc_internals as dvc
from gan import queue as q
from gan.queue import cli, read, retry, workers


class Inspect:
    """celery's inspect of the given workers: {node name: [task ids]} for each that answers."""

    def __init__(self, holds: dict[str, list[str]], asked: list):
        self.holds, self.asked = holds, asked

    def __call__(self, destination, timeout, limit):
        self.asked.append(sorted(destination))
        replies = {node: [{"id": task} for task in self.holds[node]]
                   for node in destination if node in self.holds}
        return SimpleNamespace(active=lambda: replies, reserved=lambda: {n: [] for n in replies})


def fake_queue(tmp_path: Path, holds: dict[int, list[str]]):
    """A queue whose worker number n, when asked, answers that it holds ``holds[n]``."""
    asked: list = []
    queue = SimpleNamespace(wdir=str(tmp_path / "celery"), pid_dir=str(tmp_path / "run"))
    named = {node(queue, n): tasks for n, tasks in holds.items()}
    queue.celery = SimpleNamespace(control=SimpleNamespace(inspect=Inspect(named, asked)))
    return queue, asked


def node(queue, n: int) -> str:
    return f"{dvc.node_prefix(queue)}{n}@localhost"


def worker(queue, n: int) -> tuple[int, list[str], str]:
    return (1, ["python", "dvc", "exp", "queue-worker", node(queue, n), "--clean"], "/repo")


def exec_run(queue, parent: int, rev: str) -> tuple[int, list[str], str]:
    return (parent, ["python", "dvc", "exp", "exec-run", "--infofile",
                     f"{queue.pid_dir}/{rev}/{rev}.run"], "/tmp/exp")


def running(rev: str, task: str) -> read.Entry:
    return read.Entry(SimpleNamespace(stash_rev=rev), rev, "running", task)


def test_a_task_no_free_worker_holds_is_dead_and_one_held_is_not(tmp_path):
    # worker 1 runs rev a; worker 2 answers that it holds task b only: c is nobody's
    queue, asked = fake_queue(tmp_path, {2: ["task-b"]})
    table = {10: worker(queue, 1), 11: worker(queue, 2), 20: exec_run(queue, 10, "a")}
    items = [running("a", "task-a"), running("b", "task-b"), running("c", "task-c")]
    assert read.judge(queue, items, table) == {"c": "no live queue worker holds it"}
    assert asked == [[node(queue, 2)]]  # the busy worker is not asked


def test_every_worker_busy_with_another_task_leaves_the_task_dead(tmp_path):
    queue, asked = fake_queue(tmp_path, {})
    table = {10: worker(queue, 1), 20: exec_run(queue, 10, "a")}
    verdict = read.judge(queue, [running("a", "task-a"), running("b", "task-b")], table)
    assert verdict == {"b": "no live queue worker holds it"} and asked == []


def test_an_exec_run_whose_worker_is_gone_is_dead(tmp_path):
    queue, _ = fake_queue(tmp_path, {})
    table = {10: worker(queue, 1), 20: exec_run(queue, 99, "a")}
    assert read.judge(queue, [running("a", "task-a")], table) == {
        "a": "its worker is gone; its exec-run runs on, orphaned"}


def test_two_workers_of_one_name_leave_a_task_without_exec_run_running(tmp_path):
    """`dvc queue start` gave a busy worker a namesake, which took task b and is setting it
    up: no exec-run yet, and the one name's answers cannot be told apart."""
    queue, asked = fake_queue(tmp_path, {})
    table = {10: worker(queue, 1), 11: worker(queue, 1), 12: worker(queue, 3),
             20: exec_run(queue, 10, "a"), 21: exec_run(queue, 12, "c")}
    items = [running("a", "task-a"), running("b", "task-b"), running("c", "task-c")]
    assert read.judge(queue, items, table) == {}
    assert asked == []  # no answer under a shared name is read


def test_another_repositorys_workers_are_not_counted(tmp_path):
    queue, _ = fake_queue(tmp_path, {})
    other = (1, ["python", "dvc", "exp", "queue-worker", "dvc-exp-000000-1@localhost"], "/x")
    table = {10: worker(queue, 1), 11: other, 20: exec_run(queue, 10, "a")}
    verdict = read.judge(queue, [running("a", "task-a"), running("b", "task-b")], table)
    assert verdict == {"b": "no live queue worker holds it"}


def test_a_silent_worker_that_then_exits_leaves_the_task_dead(tmp_path, monkeypatch):
    """An idle worker shutting itself down is listed but answers no more: the verdict waits
    for the next read of the processes, which finds it gone."""
    queue, asked = fake_queue(tmp_path, {})  # no worker answers
    listed = {10: worker(queue, 1), 11: worker(queue, 2), 20: exec_run(queue, 10, "a")}
    gone = {10: worker(queue, 1), 20: exec_run(queue, 10, "a")}
    tables = iter([listed, gone])
    monkeypatch.setattr(read, "processes", lambda: next(tables))
    monkeypatch.setattr(read, "SILENT_PAUSE", 0)
    items = [running("a", "task-a"), running("b", "task-b")]
    assert read.settle(queue, items) == {"b": "no live queue worker holds it"}
    assert asked == [[node(queue, 2)], [node(queue, 2)]]  # its two asks, in the first read


def test_a_worker_silent_in_every_read_leaves_the_task_running(tmp_path, monkeypatch):
    queue, asked = fake_queue(tmp_path, {})
    table = {10: worker(queue, 1), 11: worker(queue, 2), 20: exec_run(queue, 10, "a")}
    reads = []
    monkeypatch.setattr(read, "processes", lambda: reads.append(1) or table)
    monkeypatch.setattr(read, "SILENT_PAUSE", 0)
    assert read.settle(queue, [running("a", "task-a"), running("b", "task-b")]) == {}
    assert len(reads) == read.SILENT_READS and len(asked) == 2 * read.SILENT_READS


# gan-queue retry, on a queue made up here (docs/faults.md, "gan-queue"): it takes DVC's lock
# of the stash before it changes anything, queues an experiment once, and stops only the
# processes DVC recorded for it.

class Message:
    def __init__(self, task: str):
        self.headers, self.delivery_tag = {"id": task}, None

    def decode(self):
        return (), {}, None


class FakeQueue:
    """DVC's celery queue as retry reads and changes it, in memory: ``queued`` holds the
    revs on the stash, ``processed`` {rev: task id} the taken ones; ``ready`` says whether their
    tasks ended (failed, no result) or still run."""

    ref = "refs/exps/celery/stash"

    def __init__(self, tmp_path: Path, rev: str, ready: bool = True):
        from dvc.fs import localfs

        dvc_tmp = tmp_path / ".dvc" / "tmp"
        self.pid_dir = str(dvc_tmp / "exps" / "run")
        self.root = dvc_tmp / "exps" / "tmpworkspace"  # the experiment's temporary workspace
        self.root.mkdir(parents=True)
        self.repo = SimpleNamespace(tmp_dir=str(dvc_tmp), fs=localfs, config={"core": {}})
        self.queued: set[str] = set()
        self.processed = {rev: "task-1"}
        self.sent, self.removed, self.ready = [], [], ready
        self.scm = SimpleNamespace(resolve_commit=lambda r: r,
                                   set_ref=lambda ref, r, message: self.queued.add(r))
        self.celery = SimpleNamespace(
            AsyncResult=lambda task: SimpleNamespace(ready=lambda: self.ready,
                                                     forget=lambda: None),
            backend=SimpleNamespace(mark_as_failure=lambda task, _: None),
            signature=lambda sig: SimpleNamespace(delay=lambda: self.sent.append(sig)))
        self.stash = SimpleNamespace(format_message=lambda *a: "message")

    def entry(self, rev: str):
        return SimpleNamespace(stash_rev=rev, name="exp-1", head_rev=None, baseline_rev="b",
                               branch=None, asdict=lambda: {"stash_rev": rev})

    def iter_queued(self):
        return [self.entry(rev) for rev in sorted(self.queued)]

    def _iter_processed(self):
        return [(Message(task), self.entry(rev)) for rev, task in self.processed.items()]

    def _load_info(self, rev):
        return SimpleNamespace(result=None, root_dir=str(self.root))

    def remove(self, revs):
        self.removed.extend(revs)
        for rev in revs:
            self.processed.pop(rev, None)


def _queue(tmp_path: Path, ready: bool = True) -> tuple[FakeQueue, read.Entry]:
    queue = FakeQueue(tmp_path, "a" * 40, ready)
    (item,) = read.snapshot(queue)
    return queue, item


def test_a_busy_stash_leaves_the_experiment_where_it_was_with_the_whole_message(tmp_path,
                                                                              monkeypatch):
    import json
    import os

    import pytest

    from gan.errors import GanError

    monkeypatch.setattr(retry, "LOCK_WAIT", 1.0)
    queue, item = _queue(tmp_path)
    assert item.state == "failed"
    # Another DVC process (`dvc exp run --queue` in another shell) holds the stash.
    lock = Path(queue.repo.tmp_dir, "exps", "rwlock")
    lock.write_text(json.dumps({"read": {}, "write": {queue.ref: {
        "pid": os.getppid(), "cmd": "dvc exp run --queue -S train.lr=0.001"}}}))
    with pytest.raises(GanError) as caught:
        retry.requeue(queue, item, {})
    said = str(caught.value)
    assert "\n" not in said and said.startswith("exp-1: left as it was (failed): 'refs/exps/"
                                                "celery/stash' is busy, it is being blocked by:")
    assert f"(PID {os.getppid()}): dvc exp run --queue -S train.lr=0.001" in said
    assert queue.removed == [] and queue.sent == [] and queue.processed == {"a" * 40: "task-1"}


def test_two_retries_of_one_experiment_queue_it_once(tmp_path):
    queue, item = _queue(tmp_path)
    first, second = item, read.Entry(item.entry, item.rev, item.state, item.task_id, item.name)
    answers = [retry.requeue(queue, first, {}), retry.requeue(queue, second, {})]
    # The second read the queue before the first changed it.
    assert len(queue.sent) == 1 and queue.removed == ["a" * 40]
    assert answers == [True, False]
    assert [e.state for e in read.snapshot(queue)] == ["queued"]


@pytest.mark.integration
def test_retry_stops_only_the_processes_dvc_recorded_for_the_dead_experiment(tmp_path):
    import json
    import subprocess
    import sys

    queue, item = _queue(tmp_path, ready=False)
    item.state = "dead"
    rev = item.rev
    Path(queue.pid_dir, rev).mkdir(parents=True)
    argv = [sys.executable, "-c", "import time; time.sleep(120)", "exec-run", "--infofile",
            f"{queue.pid_dir}/{rev}/{rev}.run"]
    shell = subprocess.Popen(["sleep", "120"], cwd=queue.root)  # a user's, in the folder
    impostor = subprocess.Popen(argv)  # names the infofile, but DVC recorded another pid
    exec_run = subprocess.Popen(argv)
    try:
        Path(queue.pid_dir, rev, f"{rev}.json").write_text(json.dumps({"pid": exec_run.pid}))
        answer = retry.requeue(queue, item, workers.processes())
        assert exec_run.wait(timeout=20) is not None
        assert shell.poll() is None and impostor.poll() is None
        assert answer is True
        assert queue.root.is_dir()  # the user's shell works in it
        assert len(queue.sent) == 1
    finally:
        for proc in (shell, impostor, exec_run):
            proc.kill()
            proc.wait()


def _dvc_project(tmp_path: Path) -> Path:
    import subprocess

    from dvc.repo import Repo

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    Repo.init(str(tmp_path)).close()
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                    "init"], cwd=tmp_path, check=True)
    return tmp_path


def _message(body: bytes) -> str:
    import base64
    import json

    return json.dumps({"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
                       "content-type": "application/json", "headers": {
                           "id": "t1", "task": "dvc.repo.experiments.queue.tasks.run_exp"},
                       "properties": {"body_encoding": "base64", "delivery_tag": "x",
                                      "delivery_info": {"exchange": "", "routing_key": "celery"}}})


@pytest.mark.integration
def test_broken_queue_records_and_a_file_for_its_folder_are_one_line_exit_2(
        tmp_path, monkeypatch, capsys):
    repo = _dvc_project(tmp_path)
    monkeypatch.chdir(repo)
    assert q.main(["status"]) == 0  # DVC makes its queue's folders
    capsys.readouterr()
    processed = repo / ".dvc" / "tmp" / "exps" / "celery" / "broker" / "processed"
    for text, kind in (("garbage{", "JSONDecodeError"), (_message(b"not json"), "DecodeError")):
        (processed / "x.msg").write_text(text)
        assert q.main(["status"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {processed / 'x.msg'}: a broken record of DVC's queue "
                              f"({kind}: ") and err.count("\n") == 1, err
    (processed / "x.msg").unlink()
    exps = repo / ".dvc" / "tmp" / "exps"
    exps.rename(repo / "exps.saved")
    exps.write_text("")
    assert q.main(["retry"]) == 2
    assert capsys.readouterr().err == (f"error: {exps}: a file where DVC keeps its queue's "
                                       "folders (.dvc/tmp/exps); move it away\n")


@pytest.mark.integration
def test_ctrl_c_on_gan_queue_retry_wait_is_exit_130_with_one_line(tmp_path, monkeypatch,
                                                                  capsys):
    def waiting(repo, args):
        raise KeyboardInterrupt

    monkeypatch.chdir(_dvc_project(tmp_path))
    monkeypatch.setattr(cli, "retry_command", waiting)
    assert q.main(["retry", "--wait"]) == 130
    assert capsys.readouterr().err == ("gan-queue: interrupted; what it queued stays queued "
                                       "(gan-queue status)\n")
