"""The user's own images: a folder tracked by content, the judge without labels, gan-score,
RGB at 64 px, and the Fashion-MNIST export that makes the test folders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan import checkpoint, classifier, data, export_folder, metrics
from gan.config import ClassifierConfig, EvaluateConfig

from conftest import FASHION_MIRROR, VENV, shell_env, tiny_project, tiny_split

needs_mirror = pytest.mark.skipif(not FASHION_MIRROR.is_dir(), reason="Debian's "
                                  "dataset-fashion-mnist is not installed (.ci/run installs it)")
needs_venv = pytest.mark.skipif(not (VENV / "bin" / "dvc").exists(),
                                reason=".venv is missing: run `bash .ci/run setup`")
CLASS_SCORES = ("class_coverage", "class_kl", "inception_score", "label_accuracy")


def export(out: Path, *args: str) -> None:
    assert export_folder.main([str(out), "--source", str(FASHION_MIRROR), *args]) == 0


def sh(repo: Path, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
    """Run a command as a user does after README's `. .venv/bin/activate`."""
    proc = subprocess.run(cmd, cwd=repo, env=shell_env(VENV), capture_output=True, text=True,
                          timeout=900)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def ran(output: str, stage: str) -> bool:
    return f"Running stage '{stage}'" in output


def status(repo: Path) -> dict:
    return json.loads(sh(repo, "dvc", "status", "--json").stdout or "{}")


def set_params(repo: Path, **sections: dict) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


# --- the judge without labels ----------------------------------------------------------------

def one_class(split: dict) -> dict:
    return {**split, "labels": torch.zeros_like(split["labels"]), "classes": ["images"]}


def test_rotated_turns_each_image_four_ways():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    turns, k = classifier.rotated(x)
    assert turns.shape == (8, 1, 3, 3) and k.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(turns[:2], x)
    assert torch.equal(turns[4:6], x.flip(2).flip(3))  # 180 degrees
    assert torch.equal(turns[2], torch.rot90(x[0], 1, dims=(1, 2)))


def test_one_class_trains_the_rotation_judge_and_drops_class_scores(tmp_path):
    cfg = ClassifierConfig(epochs=1, min_steps=1, batch_size=16, lr=3e-3, width=4, seed=0)
    train, test = one_class(tiny_split(64)), one_class(tiny_split(32, seed=1))
    result = classifier.train_classifier(cfg, train, test)
    assert result.score_name == "rotation_accuracy"
    assert "rotation_accuracy" in result.checkpoint and "test_accuracy" not in result.checkpoint
    assert result.checkpoint["config"]["task"] == classifier.ROTATION
    assert 0.0 <= result.test_accuracy <= 1.0
    path = tmp_path / "judge.pt"
    torch.save(result.checkpoint, path)
    judge, judge_cfg = classifier.load_classifier(path)
    assert judge.head[-1].out_features == classifier.ROTATIONS
    assert judge_cfg["classes"] == ["images"]
    scores = metrics.score_images(tiny_split(40, seed=2)["images"], None, judge, train, test,
                                  EvaluateConfig(seed=0, batch_size=16))
    assert not set(CLASS_SCORES) & set(scores), scores
    assert {"fid", "kid", "precision", "recall", "fid_real", "recall_real"} <= set(scores)


def test_labelled_data_keeps_the_classifier_and_its_class_scores():
    cfg = ClassifierConfig(epochs=1, min_steps=1, batch_size=16, lr=3e-3, width=4, seed=0)
    result = classifier.train_classifier(cfg, tiny_split(64), tiny_split(32, seed=1))
    assert result.score_name == "test_accuracy" and "task" not in result.checkpoint["config"]
    assert set(result.checkpoint) == {"format", "config", "classifier", "test_accuracy"}
    scores = metrics.score_images(tiny_split(40, seed=2)["images"], None, result.classifier,
                                  tiny_split(64), tiny_split(32, seed=1),
                                  EvaluateConfig(seed=0, batch_size=16))
    assert {"class_coverage", "class_kl", "inception_score", "class_kl_real"} <= set(scores)


@pytest.mark.integration
@needs_mirror
def test_rotation_judge_learns_real_images(tmp_path):
    """On real Fashion-MNIST images without labels the rotation task is learnt well above
    chance (0.25), which the classifier stage reports under its own name."""
    export(tmp_path / "images", "--n", "1200")
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    data.download(data.IMAGE_FOLDER, raw, path=str(tmp_path / "images"))
    data.prepare(data.IMAGE_FOLDER, raw, prepared, 28)
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["classifier"].update(steps=150, batch_size=64, width=8)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(["python", "-m", "stages.classifier", "--params",
                           str(tmp_path / "params.yaml"), "--data", str(prepared), "--out",
                           str(tmp_path / "judge.pt"), "--metrics", str(tmp_path / "c.json")],
                          cwd=Path(__file__).parents[1], env=shell_env(VENV),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((tmp_path / "c.json").read_text())
    assert list(scores) == ["rotation_accuracy"]
    assert scores["rotation_accuracy"] > 0.6, scores
    assert "classifier: rotation accuracy" in proc.stdout and "test accuracy" not in proc.stdout


# --- the export script -------------------------------------------------------------------

@needs_mirror
def test_export_writes_flat_or_class_folders_tinted_and_sized(tmp_path):
    export(tmp_path / "flat", "--n", "12", "--split", "test")
    flat = sorted((tmp_path / "flat").iterdir())
    assert len(flat) == 12 and all(p.suffix == ".png" for p in flat)
    with Image.open(flat[0]) as image:
        assert image.mode == "L" and image.size == (28, 28)
    export(tmp_path / "tinted", "--n", "30", "--classes", "--tint", "--size", "64")
    folders = sorted(p.name for p in (tmp_path / "tinted").iterdir())
    assert len(folders) == 10 and "T-shirt-top" in folders  # '/' is no folder name
    files = sorted((tmp_path / "tinted").rglob("*.png"))
    assert len(files) == 30
    with Image.open(files[0]) as image:
        assert image.mode == "RGB" and image.size == (64, 64)
        pixels = np.asarray(image).reshape(-1, 3)
    assert (pixels.max(axis=0) != pixels.max(axis=0)[0]).any()  # coloured, not gray


# --- end to end: a flat folder, tracked by content, scored without labels -----------------

@pytest.fixture(scope="module")
def folder_repo(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny project on a flat folder of 300 images outside the repo (an absolute path),
    after its first `dvc repro` (committed)."""
    images = tmp_path_factory.mktemp("own") / "images"
    export(images, "--n", "300")
    repo = tiny_project(tmp_path_factory.mktemp("project"), folder=False)
    set_params(repo, data={"dataset": "image_folder", "path": str(images)},
               classifier={"batch_size": 64}, sample={"real_vs_fake": 8})
    first = sh(repo, "dvc", "repro").stdout
    assert all(ran(first, s) for s in ("download", "prepare", "classifier", "evaluate")), first
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "run on the folder")
    return repo, images


def download_changed(repo: Path) -> bool:
    return "download" in status(repo)


@needs_mirror
@pytest.mark.e2e
@needs_venv
def test_folder_run_reports_no_class_scores(folder_repo):
    repo, _ = folder_repo
    judge = json.loads((repo / "metrics" / "classifier.json").read_text())
    assert list(judge) == ["rotation_accuracy"] and 0.25 < judge["rotation_accuracy"] <= 1.0
    scores = json.loads((repo / "metrics" / "eval.json").read_text())
    names = set(scores)
    assert not {n for n in names for c in CLASS_SCORES if n.startswith(c)}, scores
    assert {"fid", "kid", "precision", "recall", "fid_real"} <= names


@needs_mirror
@pytest.mark.e2e
@needs_venv
def test_untouched_folder_reruns_nothing(folder_repo):
    repo, _ = folder_repo
    assert status(repo) == {}
    out = sh(repo, "dvc", "repro").stdout
    assert not any(ran(out, s) for s in ("download", "prepare", "classifier", "train")), out


@needs_mirror
@pytest.mark.e2e
@needs_venv
def test_editing_adding_and_deleting_an_image_reruns_download(folder_repo):
    repo, images = folder_repo
    files = sorted(images.glob("*.png"))
    kept = {path: path.read_bytes() for path in (files[3], files[7])}
    try:
        changes_rerun_download(repo, images, files)
    finally:
        # The folder and the committed run as they were (dvc.lock and metrics from git, the
        # prepared data from DVC's cache), so the next test scores that run, not a new one.
        for path, content in kept.items():
            path.write_bytes(content)
        sh(repo, "git", "checkout", "HEAD", "--", "dvc.lock", "metrics")
        sh(repo, "dvc", "checkout", "-f")
    assert "up to date" in sh(repo, "dvc", "status").stdout


def changes_rerun_download(repo: Path, images: Path, files: list[Path]) -> None:
    with Image.open(files[3]) as image:
        image.rotate(90).save(files[3])  # edited in place: same name, same size
    assert download_changed(repo)
    # The data stages alone: what comes after them is the rest of the pipeline's business.
    out = sh(repo, "dvc", "repro", "prepare").stdout
    assert ran(out, "download") and ran(out, "prepare"), out
    assert not download_changed(repo)

    new = images / "extra.png"
    new.write_bytes(files[5].read_bytes())
    assert download_changed(repo)
    new.unlink()
    assert not download_changed(repo)  # back to what dvc.lock recorded
    files[7].unlink()
    assert download_changed(repo)
    out = sh(repo, "dvc", "repro", "prepare").stdout
    assert ran(out, "download"), out
    assert not download_changed(repo)
    prepared = json.loads((repo / "metrics" / "data.json").read_text())
    assert prepared["train"]["count"] + prepared["test"]["count"] == 299


# Evaluate's scores of a project's generated images rounded to 8 bits as PNGs are: the
# run's generator and evaluate's seed, in a process that pins the project's numerics first.
SCORE_ROUNDED = """
import json, sys
from pathlib import Path

import yaml

from gan import numerics

repo = Path(sys.argv[1])
pins = numerics.settings(repo / "params.yaml")
numerics.pin_environment(*pins)
numerics.apply_torch(*pins)
import numpy as np

from gan import checkpoint, classifier, data, metrics, sample
from gan.config import EvaluateConfig

cfg = yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]
n, seed = cfg["n_samples"], cfg["seed"]
trained = checkpoint.load_generator(repo / "models" / "gan.pt")
test_data = data.load_prepared(repo / "data" / "prepared", "test")
images, _ = metrics.seeded_samples(trained.generator, n, trained.model,
                                   len(test_data["classes"]), seed, cfg["batch_size"])
pixels = np.stack([np.asarray(sample.to_grid_image(x[None], nrow=1, padding=0))
                   for x in images])
judge, judge_cfg = classifier.load_classifier(repo / "models" / "classifier.pt")
expected = metrics.score_images(data.to_unit_range(pixels, images.shape[-1]), None, judge,
                                data.load_prepared(repo / "data" / "prepared", "train"),
                                test_data, EvaluateConfig(**cfg))
expected["n_samples"] = n
expected.update(dict.fromkeys(metrics.judge_checks(expected, judge_cfg), 1))
print(json.dumps(expected))
"""


@needs_mirror
@pytest.mark.e2e
@needs_venv
def test_gan_score_of_gan_sample_images_matches_evaluate(folder_repo, tmp_path):
    """gan-score of the PNGs gan-sample writes equals evaluate's scoring of the same
    generated images after the PNGs' 8-bit rounding (compared to 1e-6, the rounding of
    metrics/eval.json)."""
    repo, _ = folder_repo
    sh(repo, "dvc", "repro")  # the other tests may have left the run behind the folder
    cfg = yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]
    n, seed = cfg["n_samples"], cfg["seed"]
    sh(repo, "gan-sample", "images", "models/gan.pt", "-o", str(tmp_path / "s"), "--n", str(n),
       "--seed", str(seed))
    got = json.loads(sh(repo, "gan-score", str(tmp_path / "s"), "--json").stdout)
    written = json.loads((repo / "metrics" / "eval.json").read_text())
    assert list(got) == sorted(written)  # the same keys
    # the junk FIDs come from images decoded from PNG files here: a unit in the 6th digit
    for key in [k for k in got if k.startswith("fid_junk_")]:
        assert got[key] == pytest.approx(written[key], rel=1e-6), key

    # evaluate's scoring of the same images after the PNGs' rounding, in a process pinned as
    # the stage and gan-score are (this one loaded torch unpinned)
    scored = subprocess.run([str(VENV / "bin" / "python"), "-c", SCORE_ROUNDED, str(repo)],
                            cwd=repo, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr
    expected = json.loads(scored.stdout)
    # junk beside the floor, as evaluate writes it: made of the same real images
    assert {f"{name}_junk_{kind}" for name in metrics.JUNK_SCORES
            for kind in metrics.JUNK_KINDS} <= set(got)
    near = {k: v for k, v in got.items() if not k.startswith("fid_junk_")}
    assert near == pytest.approx({k: round(v, 6) for k, v in expected.items()
                                  if not k.startswith("fid_junk_")}, abs=2e-6)
    # The floor's real images are evaluate's own: those scores are the stage's to the digit,
    # and so are the junk's, made of them.
    def floor_and_junk(scores):  # the junk FIDs were checked to 1e-6 above
        return {k: v for k, v in scores.items()
                if (k.endswith("_real") or "_junk_" in k) and not k.startswith("fid_junk_")}

    assert floor_and_junk(got) == floor_and_junk(written)


@needs_mirror
@pytest.mark.e2e
@needs_venv
def test_gan_score_counts_the_folder_s_training_images_as_copies(folder_repo, tmp_path):
    """The folder the run trained on, scored: each of its training images is its own nearest
    training image, at distance 0, so memorised is at least their share."""
    repo, images = folder_repo
    sh(repo, "dvc", "repro")
    proc = sh(repo, "gan-score", str(images), "--json", "--nearest", str(tmp_path / "p.png"),
              "--pairs", "5")
    got = json.loads(proc.stdout)
    counts = json.loads((repo / "metrics" / "data.json").read_text())
    assert got["n_samples"] == counts["train"]["count"] + counts["test"]["count"]
    assert got["memorised"] >= counts["train"]["count"] / got["n_samples"]
    assert 0.0 <= got["memorised_real"] < 1.0
    with Image.open(tmp_path / "p.png") as picture:
        assert picture.width > picture.height  # 5 pairs side by side
    assert "the 5 images closest to a training image" in proc.stderr
    assert f"gan-score: read {got['n_samples']} images of {images}\n" in proc.stderr


@needs_mirror
@pytest.mark.e2e
@needs_venv
def test_gan_score_names_an_unreadable_file_and_exits_2(folder_repo, tmp_path):
    repo, images = folder_repo
    folder = tmp_path / "bad"
    folder.mkdir()
    for path in sorted(images.glob("*.png"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    proc = sh(repo, "gan-score", str(folder), ok=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "broken.png" in proc.stderr, proc.stderr
    proc = sh(repo, "gan-score", str(folder), "--classifier", "nope.pt", ok=False)
    assert proc.returncode == 2 and "nope.pt" in proc.stderr and proc.stderr.count("\n") == 1


# --- end to end: RGB at 64 px, the DCGAN of Radford et al. ----------------------------------

@needs_mirror
@pytest.mark.e2e
@needs_venv
def test_rgb_64_folder_trains_the_dcgan_end_to_end(tmp_path):
    """Tinted Fashion-MNIST at 64 px in class subfolders, committed inside the repo (a
    relative data.path): the whole pipeline runs, and gan-score gives evaluate's keys."""
    repo = tiny_project(tmp_path / "project", folder=False)
    export(repo / "rgb", "--n", "120", "--classes", "--tint", "--size", "64")
    set_params(repo, data={"dataset": "image_folder", "path": "rgb", "image_size": 64},
               model={"arch": "dcgan", "g_channels": 4, "d_channels": 4},
               train={"steps": 4, "batch_size": 16, "eval_every": 2},
               # 120 images make a weak judge; its gates are tested apart
               classifier={"batch_size": 32, "allow_weak": True},
               sample={"n": 4, "real_vs_fake": 4})
    out = sh(repo, "dvc", "repro").stdout
    assert ran(out, "train") and ran(out, "evaluate"), out
    prepared = json.loads((repo / "metrics" / "data.json").read_text())
    assert prepared["image_size"] == 64 and prepared["train"]["channels"] == 3
    trained = checkpoint.load_generator(repo / "models" / "gan.pt")
    assert trained.image_shape == (3, 64, 64)
    with Image.open(repo / "outputs" / "samples.png") as grid:
        assert grid.mode == "RGB"
    scores = json.loads((repo / "metrics" / "eval.json").read_text())
    assert "class_coverage" in scores  # labelled by its class folders
    judged = json.loads((repo / "metrics" / "classifier.json").read_text())
    assert "test_accuracy" in judged and "rotation_accuracy" not in judged
    sh(repo, "gan-sample", "images", "models/gan.pt", "-o", "samples", "--n", "8")
    got = json.loads(sh(repo, "gan-score", "samples", "--json").stdout)
    def scored(keys):  # the flags depend on how many images are scored (8 here)
        return sorted(k for k in keys if not k.startswith("flag_"))

    assert scored(got) == scored(scores)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "run")
    (repo / "rgb" / "Bag").rename(repo / "rgb" / "Bag2")  # a renamed class folder
    assert "download" in status(repo)


def test_calibration_alterations_are_seeded_and_stay_in_range():
    from benchmarks import judge_calibration

    real = tiny_split(8)["images"]
    assert torch.equal(judge_calibration.altered(real, "real", 0), real)
    noisy = judge_calibration.altered(real, "noise std 0.5", 1)
    assert torch.equal(noisy, judge_calibration.altered(real, "noise std 0.5", 1))
    assert noisy.min() >= -1 and noisy.max() <= 1 and not torch.equal(noisy, real)
    uniform = judge_calibration.altered(real, "uniform noise", 1)
    assert uniform.shape == real.shape and uniform.min() >= -1 and uniform.max() <= 1
