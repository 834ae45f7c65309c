"""Bad input on purpose: every params key mistyped, out of range and misspelt; damaged files.

Each case must give one line naming what is wrong and what is allowed, and a non-zero exit.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from gan import preflight
from gan.config import SECTIONS
from gan.errors import ConfigError

from conftest import ROOT, run_stage, tiny_split, unit_train, write_idx_mirror

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
KEYS = [(section, f.name, f) for section, cls in SECTIONS.items() if section in PARAMS
        for f in dataclasses.fields(cls)]


def out_of_range(f: dataclasses.Field):
    """A value of the right type outside what ``f`` allows, or None where all are allowed."""
    meta = f.metadata
    if meta.get("path"):  # a file or folder: every string is one
        return None
    if f.type == "str":  # a name, looked up in its registry or among its choices
        return "not-a-choice"
    if "choices" in meta:
        return "not-a-choice" if isinstance(meta["choices"][0], str) else 2
    if "gt" in meta:
        return meta["gt"]
    if "min" in meta:
        return meta["min"] - 1
    if "max" in meta:
        return meta["max"] + 1
    return None


@pytest.mark.parametrize("section,key,field", KEYS, ids=[f"{s}.{k}" for s, k, _ in KEYS])
def test_every_key_wrong_type_range_and_spelling(section, key, field):
    def error(raw) -> str:  # what the first stage says of the whole params file
        with pytest.raises(ConfigError) as info:
            preflight.check_params({**PARAMS, section: raw})
        return str(info.value)

    base = dict(PARAMS[section])
    message = error({**base, key: {"not": "a value"}})
    assert message.startswith(f"{section}.{key}: got {{'not': 'a value'}}, expected ")

    bad = out_of_range(field)
    if bad is not None and isinstance(base.get(key), list):  # betas: one item out of range
        bad = [base[key][0], bad]
    if bad is not None:
        message = error({**base, key: bad})
        assert message.startswith((f"{section}.{key}: got ", f"{section}.{key}[1]: got "))
        assert "allowed:" in message or "must be" in message

    wrong = key + "s" if key + "s" not in base else key + "_"  # train.devices is a key
    misspelt = {k if k != key else wrong: v for k, v in base.items()}
    assert error(misspelt).startswith(f"{section}.{wrong}: unknown key, allowed keys: ")


@pytest.mark.integration
def test_bad_seed_through_the_train_stage(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "seed": -3}))
    proc = run_stage("train", "--params", str(tmp_path / "params.yaml"), "--data", "x",
                     "--checkpoint", "y", "--log-dir", "z", "--resume", "r")
    assert proc.returncode == 2 and proc.stderr == "error: seed: got -3, must be at least 0\n"


@pytest.mark.integration
def test_params_file_that_is_not_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("train: {lr: [\n")
    proc = run_stage("sample", "--params", str(tmp_path / "params.yaml"), "--checkpoint",
                     "c", "--data", "d", "--evolution", "e", "--out", "o", "--pictures", "p",
                     "--classifier", "j")
    assert proc.returncode == 2 and "params.yaml: not valid YAML (line" in proc.stderr


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_raw_file_through_the_prepare_stage(tmp_path, damage, monkeypatch):
    # Corrupt a copy of the real raw files' names with made-up content: the registry's
    # checksum for Fashion-MNIST cannot match, so prepare must refuse and name the file.
    raw = tmp_path / "raw"
    contents = write_idx_mirror(raw)
    for name, blob in contents.items():
        (raw / f"{name}.gz").unlink()
        blob = bytearray(blob)
        if name == "train-labels-idx1-ubyte":
            blob = blob[:-5] if damage == "truncate" else blob[:20] + bytes([blob[20] ^ 1]) \
                + blob[21:]
        (raw / name).write_bytes(bytes(blob))
    proc = run_stage("prepare", "--params", str(ROOT / "params.yaml"), "--raw", str(raw),
                     "--out", str(tmp_path / "prepared"), "--metrics", str(tmp_path / "m.json"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {raw}/") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "m.json").exists()


@pytest.mark.integration
def test_deleted_prepared_file_through_the_train_stage(tmp_path):
    (tmp_path / "prepared").mkdir()
    proc = run_stage("train", "--params", str(ROOT / "params.yaml"), "--data",
                     str(tmp_path / "prepared"), "--checkpoint", str(tmp_path / "gan.pt"),
                     "--log-dir", str(tmp_path / "live"), "--resume", str(tmp_path / "r.pt"))
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {tmp_path}/prepared/train.pt: missing; run the prepare "
                           f"stage (dvc repro prepare)\n")
    assert not (tmp_path / "gan.pt").exists()


@pytest.mark.integration
def test_checkpoint_of_another_architecture_through_the_sample_stage(tmp_path):
    from gan import train
    from gan.checkpoint import save_checkpoint
    from gan.config import ModelConfig

    model = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4)
    cfg = unit_train(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16,
                      steps=1, log_every=1, device="cpu")
    ckpt = train.train(model, cfg, 0, tiny_split(), progress=False).checkpoint
    ckpt["config"]["model"]["arch"] = "resize_conv"
    save_checkpoint(ckpt, tmp_path / "gan.pt")
    proc = run_stage("sample", "--params", str(ROOT / "params.yaml"), "--checkpoint",
                     str(tmp_path / "gan.pt"), "--data", str(tmp_path), "--evolution",
                     str(tmp_path), "--out", str(tmp_path / "grid.png"), "--pictures",
                     str(tmp_path / "pictures"), "--classifier", str(tmp_path / "judge.pt"))
    assert proc.returncode == 2
    assert "generator weights do not fit model.arch 'resize_conv'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "grid.png").exists()


