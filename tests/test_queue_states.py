"""gan-queue's verdict on running experiments, on process tables made up here: which ones no
live worker will finish (dead), and which stay running because nothing proves it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from gan import queue as q


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
    return f"{q.node_prefix(queue)}{n}@localhost"


def worker(queue, n: int) -> tuple[int, list[str], str]:
    return (1, ["python", "dvc", "exp", "queue-worker", node(queue, n), "--clean"], "/repo")


def exec_run(queue, parent: int, rev: str) -> tuple[int, list[str], str]:
    return (parent, ["python", "dvc", "exp", "exec-run", "--infofile",
                     f"{queue.pid_dir}/{rev}/{rev}.run"], "/tmp/exp")


def running(rev: str, task: str) -> q.Entry:
    return q.Entry(SimpleNamespace(stash_rev=rev), "running", task)


def test_a_task_no_free_worker_holds_is_dead_and_one_held_is_not(tmp_path):
    # worker 1 runs rev a; worker 2 answers that it holds task b only: c is nobody's
    queue, asked = fake_queue(tmp_path, {2: ["task-b"]})
    table = {10: worker(queue, 1), 11: worker(queue, 2), 20: exec_run(queue, 10, "a")}
    items = [running("a", "task-a"), running("b", "task-b"), running("c", "task-c")]
    assert q._judge(queue, items, table) == {"c": "no live queue worker holds it"}
    assert asked == [[node(queue, 2)]]  # the busy worker is not asked


def test_every_worker_busy_with_another_task_leaves_the_task_dead(tmp_path):
    queue, asked = fake_queue(tmp_path, {})
    table = {10: worker(queue, 1), 20: exec_run(queue, 10, "a")}
    verdict = q._judge(queue, [running("a", "task-a"), running("b", "task-b")], table)
    assert verdict == {"b": "no live queue worker holds it"} and asked == []


def test_an_exec_run_whose_worker_is_gone_is_dead(tmp_path):
    queue, _ = fake_queue(tmp_path, {})
    table = {10: worker(queue, 1), 20: exec_run(queue, 99, "a")}
    assert q._judge(queue, [running("a", "task-a")], table) == {
        "a": "its worker is gone; its exec-run runs on, orphaned"}


def test_two_workers_of_one_name_leave_a_task_without_exec_run_running(tmp_path):
    """`dvc queue start` gave a busy worker a namesake, which took task b and is setting it
    up: no exec-run yet, and the one name's answers cannot be told apart."""
    queue, asked = fake_queue(tmp_path, {})
    table = {10: worker(queue, 1), 11: worker(queue, 1), 12: worker(queue, 3),
             20: exec_run(queue, 10, "a"), 21: exec_run(queue, 12, "c")}
    items = [running("a", "task-a"), running("b", "task-b"), running("c", "task-c")]
    assert q._judge(queue, items, table) == {}
    assert asked == []  # no answer under a shared name is read


def test_another_repositorys_workers_are_not_counted(tmp_path):
    queue, _ = fake_queue(tmp_path, {})
    other = (1, ["python", "dvc", "exp", "queue-worker", "dvc-exp-000000-1@localhost"], "/x")
    table = {10: worker(queue, 1), 11: other, 20: exec_run(queue, 10, "a")}
    verdict = q._judge(queue, [running("a", "task-a"), running("b", "task-b")], table)
    assert verdict == {"b": "no live queue worker holds it"}
