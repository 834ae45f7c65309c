"""Progress suited to where it goes: tqdm's bar on a terminal, a line now and then in a log."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from tqdm import tqdm

from gan import progress

from conftest import ROOT, tiny_split


class Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def lines_of(bar: progress.LineProgress, postfix: bool = False) -> list[str]:
    for i in bar:
        if postfix:
            bar.set_postfix(d=f"{i / 10:.3f}")
    return bar.file.getvalue().splitlines()


def test_a_log_gets_a_line_every_few_percent_and_at_the_end():
    out = io.StringIO()
    bar = progress.LineProgress(range(200), "train", "step", 200, 0, out, Clock(0.01))
    lines = lines_of(bar, postfix=True)
    assert len(lines) == 100 // progress.EVERY_PERCENT
    assert lines[0].startswith("train: 10/200 steps (5%), ") and lines[0].endswith("d=0.900")
    assert lines[-1].startswith("train: 200/200 steps (100%), ")
    assert "\r" not in out.getvalue()


def test_a_slow_loop_gets_a_line_every_30_seconds():
    out = io.StringIO()
    slow = progress.LineProgress(range(10), "train", "step", 1000, 0, out,
                                 Clock(progress.EVERY_SECONDS / 2))
    # the clock is read once per step (and once more for each line's elapsed time)
    assert 3 <= len(lines_of(slow)) <= 10


def test_a_resumed_loop_counts_from_where_it_starts():
    out = io.StringIO()
    lines = lines_of(progress.LineProgress(range(51, 101), "train", "step", 100, 50, out,
                                           Clock(0.01)))
    assert lines[0].startswith("train: 55/100 steps (55%)") and len(lines) == 10


def test_a_terminal_keeps_the_live_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = progress.progress(range(3), desc="train", unit="step", total=3, file=Terminal())
    assert isinstance(bar, tqdm) and not bar.disable
    assert isinstance(progress.progress(range(3), desc="train", unit="step", total=3,
                                        file=io.StringIO()), progress.LineProgress)
    off = progress.progress(range(3), desc="train", unit="step", total=3, enabled=False,
                            file=io.StringIO())
    assert list(off) == [0, 1, 2] and off.disable


@pytest.mark.integration
def test_the_train_stage_writes_plain_lines_to_a_log_file(tmp_path, params):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    torch.save(tiny_split(), prepared / "train.pt")
    params["model"].update(arch="mlp", latent_dim=8, g_channels=8, d_channels=8)
    params["train"].update(steps=100, log_every=5, batch_size=16, device="cpu",
                           eval_every=0, snapshot_every=0)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    log = tmp_path / "log"
    with log.open("w") as handle:
        proc = subprocess.run(
            [sys.executable, "-m", "stages.train", "--params", str(path),
             "--data", str(prepared), "--checkpoint", str(tmp_path / "gan.pt"),
             "--log-dir", str(tmp_path / "live"), "--evolution", str(tmp_path / "evolution"),
             "--resume", str(tmp_path / "state.pt")],
            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=600,
            env={**os.environ, "GAN_RESUME_STORE": str(tmp_path / "store")})
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text  # no bar frames
    steps = [int(m) for m in re.findall(r"(?m)^train: (\d+)/100 steps \(\d+%\)", text)]
    assert steps == list(range(5, 101, 5)), text
    assert re.search(r"(?m)^train: 100/100 steps \(100%\), .*, d=[-\d.]+, g=[-\d.]+$", text)
