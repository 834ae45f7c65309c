"""Faults and hostile input: each one is refused with one line, and leaves nothing behind.

Full and read-only disks are real tmpfs mounts where this machine allows mounting (CI runs
as root), else those tests skip with the reason; the rest runs everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan import cli, data, image_folder, io
from gan.config import load_section, read_params
from gan.errors import GanError
from gan.resume import Resume, save_state

from conftest import ROOT, run_stage, spec_for, unit_train, write_idx_mirror


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def mount(tmp_path):
    """mount(options) -> a tmpfs folder mounted with those options, unmounted afterwards."""
    mounted = []

    def make(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


# --- params ------------------------------------------------------------------------------

def params_with(tmp_path: Path, section: str, key: str, value) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[section][key] = value
    return params


@pytest.mark.parametrize("key,value", [("r1_weight", float("nan")), ("mode_seeking", float("inf")),
                                       ("lr", "nan"), ("gp_weight", float("-inf"))])
def test_non_finite_numbers_are_refused_by_name(tmp_path, key, value):
    params = params_with(tmp_path, "train", key, value)
    with pytest.raises(GanError, match=rf"^train\.{key}: got .*expected a finite number"):
        load_section(params, "train")


def test_a_key_written_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\ntrain:\n  lr: 1.0e-3\n  steps: 10\n  lr: 2.0e-3\n")
    with pytest.raises(GanError, match=r"key 'lr' appears twice \(line 5\)"):
        read_params(path)


@pytest.mark.integration
def test_params_that_are_not_utf8_are_one_line_from_a_stage(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"# one seed", b"# \xff seed"))
    proc = run_stage("train", "--params", str(path), "--data", str(tmp_path / "d"),
                     "--checkpoint", str(tmp_path / "g.pt"), "--log-dir", str(tmp_path / "l"),
                     "--resume", str(tmp_path / "r.pt"))
    assert proc.returncode == 2
    assert proc.stderr == f"error: {path}: not UTF-8 text (line 1); save it as UTF-8\n"


# --- writes ------------------------------------------------------------------------------

def test_a_failed_write_of_each_kind_is_one_gan_error_and_leaves_the_old_file(tmp_path,
                                                                              monkeypatch):
    target = tmp_path / "out.json"
    io.write_json({"a": 1}, target)
    for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
        def fail(_fd, code=code):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "fsync", fail)
        with pytest.raises(GanError, match=rf"^{target}: cannot write it: "):
            io.write_json({"a": 2}, target)
    monkeypatch.undo()
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


@pytest.mark.integration
def test_a_full_disk_is_one_line_for_a_checkpoint(mount):
    folder = mount("size=64k")
    with pytest.raises(GanError, match=rf"^{folder}/gan.pt: cannot write it: no space left"):
        io.save_torch({"format": 1, "weights": torch.zeros(100_000)}, folder / "gan.pt")
    assert list(folder.iterdir()) == []


@pytest.mark.integration
def test_a_read_only_folder_is_one_line(mount):
    folder = mount("ro,size=64k")
    with pytest.raises(GanError, match=rf"^{folder}/x/m.json: cannot write it: read-only"):
        io.write_json({}, folder / "x" / "m.json")


@pytest.mark.integration
def test_a_full_disk_during_prepare_is_one_line_and_keeps_the_old_output(mount, tmp_path,
                                                                          monkeypatch):
    contents = write_idx_mirror(tmp_path / "mirror", n_train=400, n_test=40)
    spec = spec_for(contents)
    folder = mount("size=1m")
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, blob in contents.items():
        (raw / name).write_bytes(blob)
    prepared = folder / "prepared"
    prepared.mkdir()
    (prepared / "train.pt").write_bytes(b"the old output")
    monkeypatch.setitem(data.DATASETS, "fashion_mnist", spec)
    with pytest.raises(GanError, match=rf"^{prepared}: cannot write it: no space left"):
        data.prepare("fashion_mnist", raw, prepared, image_size=64)
    assert (prepared / "train.pt").read_bytes() == b"the old output"
    assert sorted(p.name for p in folder.iterdir()) == ["prepared"]


# --- leftovers of killed writers ---------------------------------------------------------

@pytest.mark.integration
def test_staging_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    stale = tmp_path / f".prepare-{dead_pid()}-abcd"
    (stale / "staged").mkdir(parents=True)
    (stale / "staged" / "train.pt").write_bytes(b"x" * 1000)
    (stale / io.STAGING_MARK).write_text(f"{stale.name.split('-')[1]}\n")
    with io.staging_dir(tmp_path / "prepared", "prepare") as tmp:
        assert tmp.name.startswith(f".prepare-{os.getpid()}-")
    assert list(tmp_path.iterdir()) == []


# --- gan-sample ----------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["grid", "{ckpt}", "-o", "{folder}"], "{folder}: is a folder; grid writes one PNG"),
    (["grid", "{ckpt}", "-o", "{out}", "--seed", str(2**64)], "--seed: got 18446744073709551616"),
    (["grid", "{ckpt}", "-o", "{out}", "--seed", "-1"], "--seed: got -1"),
    (["walk", "{ckpt}", "-o", "{out}", "--steps", "3000000"],
     "--steps: got 3000000, allowed: 2 to 256"),
])
def test_gan_sample_bad_arguments_are_one_line_exit_2(tmp_path, capsys, args, message):
    names = {"ckpt": tmp_path / "missing.pt", "folder": tmp_path, "out": tmp_path / "g.png"}
    argv = [a.format(**names) for a in args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(**names)) and err.count("\n") == 1
    assert not (tmp_path / "g.png").exists()


# --- integrity -----------------------------------------------------------------------------

def flip_middle_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    path.write_bytes(bytes(blob))


def test_a_flipped_byte_in_a_checkpoint_is_refused_by_gan_sample(tmp_path, capsys):
    path = tmp_path / "gan.pt"
    io.save_torch({"format": 1, "weights": torch.arange(200_000, dtype=torch.float32)},
                       path)
    assert io.read_torch(path, 1, "test file")["weights"][7] == 7  # intact, it loads
    flip_middle_byte(path)
    assert cli.main(["grid", str(path), "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: corrupt checkpoint: record ") and \
        "fails its CRC-32 check" in err and err.count("\n") == 1
    assert not (tmp_path / "g.png").exists()


def test_prepared_data_with_a_flipped_byte_or_a_nan_pixel_is_one_line(tmp_path):
    split = {"images": torch.zeros(50, 1, 8, 8), "labels": torch.zeros(50, dtype=torch.long),
             "classes": ["a"]}
    torch.save(split, tmp_path / "train.pt")
    assert data.load_prepared(tmp_path, "train")["images"].shape == (50, 1, 8, 8)
    flip_middle_byte(tmp_path / "train.pt")
    with pytest.raises(GanError, match="corrupt prepared split"):
        data.load_prepared(tmp_path, "train")
    split["images"][3, 0, 2, 2] = float("nan")
    split["images"][9, 0, 0, 0] = float("inf")
    torch.save(split, tmp_path / "test.pt")
    with pytest.raises(GanError, match=r"test.pt: 2 images hold NaN or infinite pixels"):
        data.load_prepared(tmp_path, "test")


# --- one trainer at a time, none without its launcher ---------------------------------------

@pytest.mark.integration
def test_a_second_holder_of_the_state_lock_is_refused_with_the_first_ones_pid(tmp_path):
    state = tmp_path / ".resume" / "train.pt"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from gan import io\n"
         f"with io.exclusive(Path({str(state)!r}), 'train'):\n"
         "    print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(GanError, match=rf"^{state}: train is already running on it "
                                           rf"\(process {holder.pid}\)"):
            with io.exclusive(state, "train"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with io.exclusive(state, "train"):  # the kernel dropped the killed holder's lock
        assert (state.parent / "train.pt.lock").read_text() == f"{os.getpid()}\n"


def running(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.integration
def test_a_stage_whose_launcher_dies_is_stopped_by_sigterm(tmp_path):
    # launcher (a python that exits when told) -> stage-like child running common.run
    script = tmp_path / "child.py"
    script.write_text(
        "import signal, sys, time\n"
        "from stages import common\n"
        "def main():\n"
        "    signal.signal(signal.SIGTERM, lambda *_: (print('stopped', flush=True), "
        "sys.exit(130)))\n"
        "    print('started', flush=True)\n"
        "    time.sleep(60)\n"
        "common.run(main)\n")
    out = tmp_path / "child.out"
    launcher = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys\n"
         f"child = subprocess.Popen([sys.executable, {str(script)!r}], cwd={str(ROOT)!r}, "
         f"stdout=open({str(out)!r}, 'w'), env={{'PYTHONPATH': {str(ROOT)!r}}})\n"
         "print(child.pid, flush=True)\n"
         "sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = int(launcher.stdout.readline())
    deadline = time.monotonic() + 60
    while "started" not in (out.read_text() if out.exists() else "") and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    launcher.kill()  # SIGKILL: the launcher tells its child nothing
    launcher.wait()
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(child), "the orphaned stage still runs"
    assert out.read_text() == "started\nstopped\n"


# --- saved states are data -----------------------------------------------------------------

class RunsCode:
    """Unpickling this calls os.system: what a crafted state file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def tiny_run(tmp_path: Path, resume: Path, lines: list[str], steps: int = 2,
             checkpoint_every: int = 500):
    from gan import train
    from gan.config import ModelConfig

    from conftest import tiny_split
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=4, d_channels=4)
    cfg = unit_train(loss="non_saturating", optimizer="adam", lr=1e-3, batch_size=8,
                      steps=steps, log_every=1, device="cpu")
    return train.train(model, cfg, 0, tiny_split(16), progress=False,
                       say=lines.append, resume=Resume(path=resume, every=checkpoint_every))


@pytest.mark.integration
def test_a_crafted_pickle_in_the_resume_state_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    resume = tmp_path / "train.pt"
    torch.save({"format": 1, "payload": RunsCode(marker)}, resume)
    lines: list[str] = []
    result = tiny_run(tmp_path, resume, lines)
    assert not marker.exists()
    assert result.resumed_from == 0
    assert len(lines) == 1 and lines[0].startswith(f"train: ignoring {resume}: not a readable "
                                                   "resume state (UnpicklingError")


def test_a_state_naming_a_snapshot_outside_its_folder_is_refused(tmp_path):
    from gan.config import ModelConfig
    from gan.hooks import EvolutionSnapshots

    hook = EvolutionSnapshots(5, tmp_path / "evolution", 0,
                              ModelConfig(arch="mlp", latent_dim=8, g_channels=4,
                                          d_channels=4), 10)
    for name in ("../../escaped.png", "/tmp/escaped.png", "step_000005.png/../x.png"):
        with pytest.raises(GanError, match="the saved state names a snapshot"):
            hook.load_state_dict({"step_000005.png": b"png", name: b"png"})
    assert not (tmp_path / "escaped.png").exists()
    assert list((tmp_path / "evolution").iterdir()) == []
    hook.load_state_dict({"step_000005.png": b"png"})
    assert (tmp_path / "evolution" / "step_000005.png").read_bytes() == b"png"


def test_a_flipped_byte_in_the_resume_state_starts_afresh_with_one_line(tmp_path):
    resume = tmp_path / "train.pt"
    first = tiny_run(tmp_path, None, [], steps=2)
    save_state(first.state, resume)
    flip_middle_byte(resume)
    lines: list[str] = []
    assert tiny_run(tmp_path, resume, lines, steps=3).resumed_from == 0
    assert len(lines) == 1 and "corrupt resume state: record " in lines[0] and \
        lines[0].endswith("; starting from step 0")


@pytest.mark.integration
def test_a_second_train_stage_on_the_same_state_refuses_with_one_line(tmp_path):
    resume = tmp_path / ".resume" / "train.pt"
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    with io.exclusive(resume, "a train stage"):
        proc = run_stage("train", "--params", str(params), "--data", str(tmp_path / "d"),
                         "--checkpoint", str(tmp_path / "g.pt"), "--log-dir",
                         str(tmp_path / "log"), "--resume", str(resume))
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {resume}: a train stage is already running on it "
                           f"(process {os.getpid()}); wait for it to finish or stop it\n")


@pytest.mark.integration
def test_the_train_stage_refuses_a_read_only_output_before_training(mount, tmp_path):
    folder = mount("ro,size=64k")
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    proc = run_stage("train", "--params", str(params), "--data", str(tmp_path / "d"),
                     "--checkpoint", str(folder / "gan.pt"), "--log-dir", str(tmp_path / "l"),
                     "--resume", str(tmp_path / "r" / "train.pt"))
    assert proc.returncode == 2
    assert proc.stderr == f"error: {folder}: cannot write it: read-only file system\n"


# --- hostile image folders -------------------------------------------------------------------

def gray_pngs(folder: Path, values: list[int], bits: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, value in enumerate(values):
        pixels = np.full((6, 6), value, dtype=np.uint16 if bits == 16 else np.uint8)
        Image.fromarray(pixels).save(folder / f"g{i:02d}.png")
    return folder


def test_16_bit_grayscale_pngs_are_scaled_to_8_bits(tmp_path):
    values = [0, 257, 32768, 40000, 65535, 1000, 2000, 3000, 4000, 5000, 6000, 7000]
    folder = gray_pngs(tmp_path / "wide", values, bits=16)
    assert Image.open(folder / "g02.png").mode.startswith("I")  # really 16-bit on disk
    images, paths = image_folder.read_images(folder, 6, 1)
    got = {p.name: int(img[0, 0]) for p, img in zip(paths, images, strict=True)}
    expected = {f"g{i:02d}.png": round(v * 255 / 65535) for i, v in enumerate(values)}
    assert got == expected  # 32768 -> 128, not the 255 of Pillow's convert("L")
    assert got["g02.png"] == 128 and got["g04.png"] == 255 and got["g01.png"] == 1
    data.download("image_folder", tmp_path / "raw", path=str(folder))
    splits, _, channels, _ = image_folder.load(tmp_path / "raw", 6, None)
    assert channels == 1
    assert sorted(int(x[0, 0]) for x in np.concatenate([s[0] for s in splits.values()])) == \
        sorted(expected.values())


def test_16_bit_rgb_pngs_keep_their_colour(tmp_path):
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))

    # A 2 x 2 16-bit RGB PNG written byte by byte, each row (65535, 32768, 0), (257, 514, 771)
    rows = (b"\x00" + bytes.fromhex("ffff" "8000" "0000" "0101" "0202" "0303")) * 2
    size = (2).to_bytes(4, "big")
    blob = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", size + size + bytes([16, 2, 0, 0, 0]))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    folder = tmp_path / "rgb16"
    folder.mkdir()
    (folder / "a.png").write_bytes(blob)
    images, _ = image_folder.read_images(folder, 2, 3)
    # Pillow reads the high byte of each 16-bit sample, a truncation within one level
    np.testing.assert_allclose(images[0].astype(int), [[[255, 128, 0], [1, 2, 3]]] * 2, atol=1)


def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    folder = gray_pngs(tmp_path / "bomb", [10, 20, 30])
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(folder / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 is then over twice it
    with pytest.raises(GanError, match=r"big.png: over 2,000 pixels, which Pillow refuses"):
        data.download("image_folder", tmp_path / "raw", path=str(folder))
    assert not (tmp_path / "raw").exists()


def test_a_file_name_that_is_not_utf8_is_one_line(tmp_path):
    folder = gray_pngs(tmp_path / "names", [10, 20, 30])
    os.rename(folder / "g00.png", os.path.join(os.fsencode(folder), b"\xff\xfe.png"))
    with pytest.raises(GanError, match=r"a file name that is not UTF-8; rename it"):
        data.download("image_folder", tmp_path / "raw", path=str(folder))


@pytest.mark.parametrize("link,message", [
    ("outside", "outside data.path; copy the file in instead"),
    ("folder", "a link to a folder"),
    ("loop", "a link that leads nowhere"),
    ("broken", "a link that leads nowhere"),
])
def test_links_that_leave_the_folder_or_lead_nowhere_are_one_line(tmp_path, link, message):
    folder = gray_pngs(tmp_path / "linked" / "a", [10, 20, 30]).parent
    gray_pngs(folder / "b", [40, 50])
    elsewhere = gray_pngs(tmp_path / "elsewhere", [60])
    target = {"outside": elsewhere / "g00.png", "folder": elsewhere,
              "loop": folder / "a" / "x.png", "broken": folder / "gone.png"}[link]
    (folder / "a" / "x.png").symlink_to(target)
    with pytest.raises(GanError, match=message):
        data.download("image_folder", tmp_path / "raw", path=str(folder))
    assert not (tmp_path / "raw").exists()


def test_a_link_to_a_file_inside_the_folder_is_followed(tmp_path):
    folder = gray_pngs(tmp_path / "inside" / "a", [10, 20, 30]).parent
    gray_pngs(folder / "b", [40, 50])
    (folder / "a" / "again.png").symlink_to(folder / "b" / "g00.png")
    data.download("image_folder", tmp_path / "raw", path=str(folder))
    copied = tmp_path / "raw" / "images" / "a" / "again.png"
    assert not copied.is_symlink() and copied.read_bytes() == \
        (folder / "b" / "g00.png").read_bytes()


# --- scoring needs enough images --------------------------------------------------------------

def test_evaluate_n_samples_below_what_the_scores_need_is_refused_by_name():
    from gan import metrics

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"]["n_samples"] = metrics.MIN_SAMPLES - 1
    with pytest.raises(GanError, match=rf"^evaluate.n_samples: got {metrics.MIN_SAMPLES - 1}, "
                                       rf"must be at least {metrics.MIN_SAMPLES}$"):
        load_section(params, "evaluate")
    params["evaluate"]["n_samples"] = metrics.MIN_SAMPLES
    assert load_section(params, "evaluate").n_samples == metrics.MIN_SAMPLES
    # and that many really can be scored: every point of the k-NN has its k neighbours
    assert metrics.knn_radii(torch.randn(metrics.MIN_SAMPLES, 8)).shape == (metrics.MIN_SAMPLES,)


def test_a_small_test_split_is_warned_about_and_a_tiny_one_refused(tmp_path):
    from gan import metrics

    assert metrics.small_split_warning(metrics.RELIABLE_TEST_IMAGES) is None
    warning = metrics.small_split_warning(5)
    assert warning.startswith("warning: the test split holds 5 images; FID, KID, precision")
    too_few = metrics.MIN_TEST - 1  # density and coverage need k = 5 others per test image
    with pytest.raises(GanError, match=rf"^{tmp_path}/test.pt: the test split holds {too_few} "
                                       rf"images; scoring needs at least {metrics.MIN_TEST}$"):
        metrics.check_test_split(too_few, tmp_path / "test.pt")
    metrics.check_test_split(metrics.MIN_TEST, tmp_path / "test.pt")


def test_a_real_state_loads_as_data_and_resumes(tmp_path):
    """Every value a run saves is of a type weights_only=True accepts (torch's version
    string was a TorchVersion, which it does not), so an honest state resumes."""
    resume = tmp_path / "train.pt"
    whole = tiny_run(tmp_path, resume, [], steps=3, checkpoint_every=2)  # saves step 2
    assert torch.load(resume, weights_only=True)["step"] == 2
    lines: list[str] = []
    resumed = tiny_run(tmp_path, resume, lines, steps=3, checkpoint_every=2)
    assert lines == [f"train: resuming from step 2 of 3 ({resume})"]
    assert resumed.resumed_from == 2
    for name, value in whole.checkpoint["generator"].items():
        assert torch.equal(resumed.checkpoint["generator"][name], value), name


# --- Ctrl-C and gan.export_folder (faults, round two) ------------------------------------

def test_ctrl_c_on_gan_score_is_exit_130_with_one_line(tmp_path, monkeypatch, capsys):
    from gan import classifier

    def interrupted(path):
        raise KeyboardInterrupt  # as Ctrl-C while the judge loads

    monkeypatch.setattr(classifier, "load_classifier", interrupted)
    assert cli.score_main([str(tmp_path), "--params", str(tmp_path / "none.yaml")]) == 130
    captured = capsys.readouterr()
    assert captured.err == "gan-score: interrupted\n" and captured.out == ""


def _tiny_split() -> tuple[np.ndarray, np.ndarray, list[str]]:
    images = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    return images, np.array([0, 1, 0]), ["a", "b/c"]


@pytest.mark.parametrize("case", ["file", "under_file", "proc", "not_empty"])
def test_export_folder_refuses_an_out_it_cannot_or_should_not_write_in_one_line(
        tmp_path, capsys, case):
    from gan import export_folder

    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    full = tmp_path / "full"
    full.mkdir()
    (full / "00000.png").write_bytes(b"a user's image")
    out, message = {
        "file": (mine, f"{mine}: exists and is not a folder; name a new or empty folder"),
        "under_file": (mine / "out", f"{mine}: is not a folder; name a path in a folder"),
        "proc": (Path("/proc/gan-export-test"), "/proc/gan-export-test: cannot write it"),
        "not_empty": (full, f"{full}: holds 1 entries already; name a new or empty folder, or "
                            "pass --overwrite to write over its images"),
    }[case]
    with pytest.raises(GanError) as caught:
        export_folder.export(out, *_tiny_split(), 3, class_folders=True, tint=False, size=None)
    assert str(caught.value).startswith(message)
    assert export_folder.main([str(out), "--source", str(tmp_path / "no_mirror")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert mine.read_text() == "mine" and (full / "00000.png").read_bytes() == b"a user's image"


def test_export_folder_overwrites_a_non_empty_out_only_when_told(tmp_path):
    from gan import export_folder

    (tmp_path / "00000.png").write_bytes(b"old")
    assert export_folder.export(tmp_path, *_tiny_split(), 3, class_folders=False, tint=False,
                                size=None, overwrite=True) == 3
    assert Image.open(tmp_path / "00000.png").size == (8, 8)


def test_gan_score_reads_a_folder_one_batch_at_a_time_to_the_same_features(tmp_path,
                                                                          monkeypatch):
    from gan import classifier

    for i in range(10):
        Image.fromarray(np.full((8, 8), 20 * i, dtype=np.uint8), mode="L").save(
            tmp_path / f"{i:02d}.png")
    torch.manual_seed(0)
    judge = classifier.Classifier((1, 8, 8), 3, width=2).eval()
    paths = image_folder.image_paths(tmp_path)
    whole = classifier.extract(judge, data.to_unit_range(
        image_folder.read_images(tmp_path, 8, 1)[0], 8), 4)
    events = []
    read, features = image_folder.read_image, judge.features
    monkeypatch.setattr(image_folder, "read_image",
                        lambda *a: events.append("read") or read(*a))
    monkeypatch.setattr(judge, "features", lambda x: events.append(len(x)) or features(x))
    streamed = cli.stream_features(judge, paths, 8, 1, batch_size=4)
    for a, b in zip(streamed, whole, strict=True):
        assert torch.equal(a, b)  # the same batches: the same bits
    # Never more than one batch of pixels read ahead of the judge.
    assert events == ["read"] * 4 + [4] + ["read"] * 4 + [4] + ["read"] * 2 + [2]


@pytest.mark.integration
def test_export_folder_into_a_read_only_folder_is_one_line(mount, capsys):
    from gan import export_folder

    out = mount("ro,size=64k") / "out"
    assert export_folder.main([str(out), "--source", str(out.parent / "no_mirror")]) == 2
    assert capsys.readouterr().err == f"error: {out}: cannot write it: read-only file system\n"
