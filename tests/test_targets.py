"""Output paths: every command writes only regular files it creates, in folders that exist or
that it owns, and removes only the temporary files it made itself.

Each command that takes an output path is pointed at what is not a regular file (a FIFO, a
socket, a character device, a link to a FIFO, a folder): it refuses in one line, exit code
2, and the target is as it was.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gan import cli, compare, export_folder, io, plots, sample, train
from gan.checkpoint import save_checkpoint
from gan.config import ModelConfig
from gan.errors import GanError

from conftest import run_stage, tiny_split, unit_train

KINDS = ("fifo", "socket", "device", "link_to_fifo", "folder")


def make_target(path: Path, kind: str) -> Path:
    """Put a ``kind`` of non-regular file at ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        # A socket's path is limited to about 100 bytes: bound by a name relative to its folder.
        here = os.getcwd()
        os.chdir(path.parent)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(path.name)
        finally:
            os.chdir(here)
    elif kind == "device":  # /dev/null's numbers
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node is not permitted here")
    elif kind == "link_to_fifo":
        fifo = path.with_name(path.name + ".the-fifo")
        os.mkfifo(fifo)
        path.symlink_to(fifo.name)
    elif kind == "folder":
        path.mkdir()
        (path / "a user's file").write_text("mine")
    return path


def snapshot(path: Path) -> tuple:
    """What ``path`` is: its type, inode and device numbers, link target and folder contents."""
    info = path.lstat()
    link = os.readlink(path) if path.is_symlink() else None
    inside = sorted(p.name for p in path.iterdir()) if path.is_dir() and not link else None
    return stat.S_IFMT(info.st_mode), info.st_ino, info.st_rdev, link, inside


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=4, d_channels=4)
    cfg = unit_train(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16,
                     steps=1, log_every=1, device="cpu")
    path = tmp_path_factory.mktemp("ckpt") / "gan.pt"
    save_checkpoint(train.train(model, cfg, 0, tiny_split(), progress=False).checkpoint, path)
    return path


def refused(err: str, target: Path) -> bool:
    """Whether ``err`` is one error line naming ``target`` as what cannot be written over."""
    return err.count("\n") == 1 and err.startswith(f"error: {target}: ") and (
        "not a regular file" in err or "is a folder" in err)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["grid", "walk"])
def test_gan_sample_never_writes_over_what_is_not_a_regular_file(tmp_path, capsys, checkpoint,
                                                                   kind, mode):
    target = make_target(tmp_path / "out.png", kind)
    before = snapshot(target)
    assert cli.main([mode, str(checkpoint), "-o", str(target), "--n", "2"]) == 2
    assert refused(capsys.readouterr().err, target)
    assert snapshot(target) == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", KINDS)
def test_gan_sample_images_never_writes_over_what_is_not_a_regular_file(tmp_path, capsys,
                                                                         checkpoint, kind):
    out = tmp_path / "images"
    out.mkdir()
    target = make_target(out / "001.png", kind)
    before = snapshot(target)
    assert cli.main(["images", str(checkpoint), "-o", str(out), "--n", "3"]) == 2
    assert refused(capsys.readouterr().err, target)
    assert snapshot(target) == before and leftovers(out) == []


@pytest.mark.parametrize("kind", KINDS)
def test_gan_score_nearest_never_writes_over_what_is_not_a_regular_file(tmp_path, capsys, kind):
    target = make_target(tmp_path / "pairs.png", kind)
    before = snapshot(target)
    assert cli.score_main([str(tmp_path), "--nearest", str(target), "--classifier",
                           str(tmp_path / "missing.pt")]) == 2
    assert refused(capsys.readouterr().err, target)  # refused before the judge is looked for
    assert snapshot(target) == before


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch) -> Path:
    from dvc.repo import Repo

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    Repo.init(str(repo)).close()
    monkeypatch.chdir(repo)
    return repo


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_gan_compare_plot_never_writes_over_what_is_not_a_regular_file(dvc_repo, capsys, kind):
    target = make_target(dvc_repo.parent / "bands.png", kind)
    before = snapshot(target)
    assert compare.main(["--plot", str(target)]) == 2
    assert refused(capsys.readouterr().err, target)  # refused before the runs are read
    assert snapshot(target) == before


@pytest.mark.parametrize("kind", KINDS)
def test_export_folder_never_writes_over_what_is_not_a_regular_file(tmp_path, kind):
    target = make_target(tmp_path / "00001.png", kind)
    before = snapshot(target)
    images = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    with pytest.raises(GanError) as caught:
        export_folder.export(tmp_path, images, np.array([0, 1, 0]), ["a", "b"], 3,
                             class_folders=False, tint=False, size=None, overwrite=True)
    assert refused(f"error: {caught.value}\n", target)
    assert snapshot(target) == before and leftovers(tmp_path) == []


WRITERS = {
    "write_json": lambda path: io.write_json({"fid": 1.0}, path),
    "save_torch": lambda path: io.save_torch({"format": 1}, path),
    "save_png": lambda path: sample.save_png(sample.to_grid_image(torch.zeros(1, 1, 8, 8)),
                                             path),
    "save_gif": lambda path: sample.save_gif([sample.to_grid_image(torch.zeros(1, 1, 8, 8))],
                                             path),
    "save_figure": lambda path: plots.save_figure(plots.plt.figure(), path),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("writer", WRITERS)
def test_the_stages_writers_never_write_over_what_is_not_a_regular_file(tmp_path, writer,
                                                                        kind):
    target = make_target(tmp_path / "out", kind)
    before = snapshot(target)
    with pytest.raises(GanError) as caught:
        WRITERS[writer](target)
    assert refused(f"error: {caught.value}\n", target)
    assert snapshot(target) == before and leftovers(tmp_path) == []


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_stage_refuses_an_output_that_is_not_a_regular_file_in_one_line(tmp_path, kind):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in plots.CURVES:
        (logs / f"{name}.tsv").write_text(f"step\t{name}\n0\t1.0\n1\t0.5\n")
    target = make_target(tmp_path / "curves.png", kind)
    before = snapshot(target)
    proc = run_stage("plot", "--log-dir", str(logs), "--out", str(target))
    assert proc.returncode == 2 and refused(proc.stderr, target), proc.stderr
    assert snapshot(target) == before


def test_a_link_to_a_regular_file_is_replaced_and_its_target_kept(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text("a user's file")
    (tmp_path / "out.json").symlink_to(mine.name)
    io.write_json({"a": 1}, tmp_path / "out.json")
    assert mine.read_text() == "a user's file"
    assert not (tmp_path / "out.json").is_symlink()


# --- folders -------------------------------------------------------------------------------

@pytest.mark.integration
def test_gan_compare_plot_never_makes_the_folders_above_its_file(dvc_repo, capsys):
    target = dvc_repo.parent / "nonexistent" / "dir" / "x.png"
    assert compare.main(["--plot", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target.parent}: no such folder; make it first or name a path in " \
                  "a folder that exists\n"
    assert not (dvc_repo.parent / "nonexistent").exists()


@pytest.mark.integration
@pytest.mark.parametrize("where", ["under_file", "proc"])
def test_gan_compare_plot_under_a_file_or_in_proc_is_one_line(dvc_repo, capsys, where):
    mine = dvc_repo.parent / "mine.txt"
    mine.write_text("mine")
    target = {"under_file": mine / "x.png", "proc": Path("/proc/gan-test-x.png")}[where]
    assert compare.main(["--plot", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("mode", ["grid", "images"])
def test_gan_sample_never_makes_the_folders_above_its_output(tmp_path, capsys, checkpoint,
                                                             mode):
    out = tmp_path / "no" / "such" / ("x.png" if mode == "grid" else "folder")
    assert cli.main([mode, str(checkpoint), "-o", str(out), "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out.parent}: no such folder") and err.count("\n") == 1
    assert not (tmp_path / "no").exists()


def test_gan_sample_images_makes_its_own_folder(tmp_path, checkpoint):
    assert cli.main(["images", str(checkpoint), "-o", str(tmp_path / "new"), "--n", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["000.png", "001.png"]


def test_export_folder_never_makes_the_folders_above_its_out(tmp_path):
    images = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    with pytest.raises(GanError, match=rf"^{tmp_path / 'no'}: no such folder"):
        export_folder.export(tmp_path / "no" / "out", images, np.array([0, 1, 0]), ["a", "b"],
                             3, class_folders=True, tint=False, size=None)
    assert not (tmp_path / "no").exists()


def test_a_stage_writer_makes_the_stages_own_folders(tmp_path):
    io.write_json({"a": 1}, tmp_path / "metrics" / "eval.json")
    assert (tmp_path / "metrics" / "eval.json").read_text() == '{\n  "a": 1\n}\n'


# --- temporary files ---------------------------------------------------------------------

def test_a_write_removes_no_file_or_folder_but_its_own_temporary(tmp_path, capsys, checkpoint):
    backup = tmp_path / ".grid.png.backup.tmp"
    backup.mkdir()
    (backup / "kept.png").write_bytes(b"a user's backup")
    numbered = tmp_path / ".grid.png.1.tmp"
    numbered.write_bytes(b"a user's file")
    killed = tmp_path / f".grid.png.{io.TMP_TAG}-999999999-abcd1234.tmp"
    killed.write_bytes(b"what a killed writer left")
    assert cli.main(["grid", str(checkpoint), "-o", str(tmp_path / "grid.png"), "--n", "2"]) == 0
    assert (backup / "kept.png").read_bytes() == b"a user's backup"
    assert numbered.read_bytes() == b"a user's file"
    assert killed.exists()  # not this process's: left, with the killed writer's id in its name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [backup.name, numbered.name, killed.name, "grid.png"])


def test_a_failed_write_removes_its_own_temporary(tmp_path):
    def fail(handle):
        handle.write(b"half")
        raise ValueError("stop")

    with pytest.raises(ValueError):
        io.write_atomic(tmp_path / "x.json", fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_staging_folders_named_like_the_projects_are_kept_without_its_mark(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()
    gone = proc.pid  # a process that has exited
    users = tmp_path / f".prepare-{gone}-backup"
    (users / "staged").mkdir(parents=True)
    (users / "staged" / "train.pt").write_bytes(b"a user's")
    killed = tmp_path / f".prepare-{gone}-abcd"
    killed.mkdir()
    (killed / io.STAGING_MARK).write_text(f"{gone}\n")
    with io.staging_dir(tmp_path / "prepared", "prepare") as tmp:
        assert (tmp / io.STAGING_MARK).read_text() == f"{os.getpid()}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [users.name]
