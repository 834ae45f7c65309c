"""The stage scripts as DVC runs them: bad input gives one line and a non-zero exit."""

import pytest
import torch
import yaml

from gan import checkpoint
from gan.config import TrainConfig

from conftest import ROOT, run_stage, tiny_split

pytestmark = pytest.mark.integration  # every test here starts processes


def write_params(tmp_path, params, section, key, value):
    params = yaml.safe_load(yaml.safe_dump(params))
    if key is None:
        params[section] = value
    else:
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("stage,section,key,value,fragments", [
    ("download", "data", "dataset", "cifar10", ["data.dataset", "'cifar10'", "kmnist"]),
    ("prepare", "data", "image_size", "big", ["data.image_size", "'big'", "an integer"]),
    ("train", "train", "lr", -1, ["train.lr", "-1", "greater than 0"]),
    ("train", "model", "arch", "gpt", ["model.arch", "'gpt'", "mlp, dcgan"]),
    ("train", "train", "batchsize", 3, ["train.batchsize", "unknown key", "batch_size"]),
    ("sample", "sample", "n", 0, ["sample.n", "at least 1"]),
    ("plot", "plot", "dpi", "high", ["plot.dpi", "'high'"]),
])
def test_bad_params_stop_the_stage_before_work(tmp_path, params, stage, section, key, value,
                                               fragments):
    path = write_params(tmp_path, params, section, key, value)
    out = tmp_path / "out"
    args = {"download": ["--out", str(out)],
            "prepare": ["--raw", str(tmp_path), "--out", str(out), "--metrics",
                        str(tmp_path / "m.json")],
            "train": ["--data", str(tmp_path), "--checkpoint", str(out), "--log-dir",
                      str(tmp_path / "log"), "--resume", str(tmp_path / "resume.pt")],
            "sample": ["--checkpoint", str(tmp_path / "c.pt"), "--data", str(tmp_path),
                       "--evolution", str(tmp_path), "--out", str(out), "--pictures",
                       str(out), "--classifier", str(tmp_path / "j.pt")],
            "plot": ["--log-dir", str(tmp_path), "--out", str(out)]}[stage]
    proc = run_stage(stage, "--params", str(path), *args)
    assert_one_line_error(proc, *fragments)
    assert not out.exists()


def test_debug_env_shows_the_traceback(tmp_path, params):
    path = write_params(tmp_path, params, "sample", "n", 0)
    proc = run_stage("sample", "--params", str(path), "--checkpoint", "x", "--data", "x",
                     "--evolution", "x", "--out", "y", "--pictures", "y", "--classifier", "j",
                     env={"GAN_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_sample_stage_rejects_a_foreign_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    proc = run_stage("sample", "--params", str(ROOT / "params.yaml"), "--checkpoint",
                     str(tmp_path / "foreign.pt"), "--data", str(tmp_path), "--evolution",
                     str(tmp_path), "--out", str(tmp_path / "grid.png"), "--pictures",
                     str(tmp_path / "pictures"), "--classifier", str(tmp_path / "j.pt"))
    assert_one_line_error(proc, "foreign.pt", "not a checkpoint of this project")
    assert not (tmp_path / "grid.png").exists()


def test_train_sample_plot_stages_on_tiny_data(tmp_path, params):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    torch.save(tiny_split(), prepared / "train.pt")
    torch.save(tiny_split(n=40, seed=1), prepared / "test.pt")
    params = yaml.safe_load(yaml.safe_dump(params))
    params["model"].update(arch="mlp")
    params["train"].update(steps=4, log_every=2, batch_size=16, device="cpu", snapshot_every=3,
                           eval_every=0)
    params["sample"].update(n=9, real_vs_fake=8, nearest=4, nearest_pool=32)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    p = ["--params", str(tmp_path / "params.yaml")]
    ckpt, log_dir = tmp_path / "gan.pt", tmp_path / "live"
    evolution = tmp_path / "evolution"
    proc = run_stage("train", *p, "--data", str(prepared), "--checkpoint", str(ckpt),
                     "--log-dir", str(log_dir), "--resume", str(tmp_path / "resume.pt"),
                     "--evolution", str(evolution))
    assert proc.returncode == 0, proc.stderr
    tsv = (log_dir / "plots" / "metrics" / "d_loss.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["step", "d_loss"] and [r.split("\t")[0] for r in tsv[1:]] \
        == ["2", "4"]
    assert yaml.safe_load((log_dir / "metrics.json").read_text())["step"] == 4
    config = torch.load(ckpt, weights_only=True)["config"]
    left_off = {k: v for k, v in params["train"].items() if k not in ("augment", "nodes")}
    assert config["train"] == left_off and config["train"]["betas"] == [0.0, 0.99]
    assert checkpoint.load_generator(ckpt).model.arch == "mlp"
    assert TrainConfig(**{**config["train"], "betas": tuple(config["train"]["betas"])}).steps == 4

    assert sorted(p.name for p in evolution.iterdir()) == ["step_000003.png",
                                                           "step_000004.png"]

    pictures = tmp_path / "pictures"
    from gan.classifier import train_classifier
    from gan.config import ClassifierConfig
    judge = train_classifier(ClassifierConfig(epochs=1, min_steps=1, batch_size=16, lr=1e-3,
                                              width=4, seed=0),
                             tiny_split(), tiny_split(n=40, seed=1))
    torch.save(judge.checkpoint, tmp_path / "judge.pt")
    proc = run_stage("sample", *p, "--checkpoint", str(ckpt), "--data", str(prepared),
                     "--evolution", str(evolution), "--out", str(tmp_path / "g.png"),
                     "--pictures", str(pictures), "--classifier", str(tmp_path / "judge.pt"))
    assert proc.returncode == 0, proc.stderr
    from PIL import Image
    assert Image.open(tmp_path / "g.png").size == (3 * 30 + 2, 3 * 30 + 2)
    assert sorted(p.name for p in pictures.iterdir()) == [
        "arithmetic.png", "evolution.gif", "interpolation.png", "nearest_train.png",
        "real_vs_fake.png", "real_vs_fake_key.png"]
    assert Image.open(pictures / "evolution.gif").n_frames == 2
    assert Image.open(pictures / "real_vs_fake.png").size == (4 * 34 + 6, 4 * 34 + 6)

    proc = run_stage("plot", *p, "--log-dir", str(log_dir / "plots" / "metrics"), "--out",
                     str(tmp_path / "curves.png"))
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "curves.png").size == (700, 800)
