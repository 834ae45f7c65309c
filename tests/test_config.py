import dataclasses

import pytest

from gan import preflight
from gan.config import (
    SECTIONS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    from_params,
    load_section,
    load_seed,
    read_params,
)
from gan.errors import ConfigError, GanError


def test_repo_params_load_into_every_section(params):
    for name in SECTIONS:
        cfg = load_section(params, name)
        assert type(cfg) is SECTIONS[name]
    assert load_seed(params) == params["seed"]


def default_as_yaml(field: dataclasses.Field):
    """A field's default as params.yaml writes it (a tuple is a list); MISSING when none."""
    default = field.default
    return list(default) if isinstance(default, tuple) else default


def test_every_dataclass_default_is_params_yamls_value(params):
    wrong = []
    for name, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            key = f"{name}.{field.name}"
            assert field.name in params[name], f"{key}: a field params.yaml does not list"
            default = default_as_yaml(field)
            if default is not dataclasses.MISSING and default != params[name][field.name]:
                wrong.append(f"{key}: the dataclass says {default!r}, params.yaml "
                             f"{params[name][field.name]!r}")
    assert not wrong, "defaults that disagree with params.yaml:\n" + "\n".join(wrong)


def test_a_section_built_from_its_defaults_is_the_shipped_one(params):
    """The fields params.yaml must give (no default) given, each section is params.yaml's."""
    for name, cls in SECTIONS.items():
        required = {f.name: params[name][f.name] for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING}
        assert from_params(cls, required, name) == load_section(params, name), name


def test_every_params_key_has_a_comment(root):
    for number, line in enumerate((root / "params.yaml").read_text().splitlines(), 1):
        if line.strip() and not line.strip().startswith("#") and not line.endswith(":"):
            assert "#" in line, f"params.yaml line {number} has no comment: {line!r}"


def test_config_is_frozen(params):
    cfg = load_section(params, "train")
    with pytest.raises(AttributeError):
        cfg.lr = 1.0


@pytest.mark.parametrize("text", ["1e-4", "2.0e-4", "1e-7", "1"])
def test_float_strings_read_as_floats(params, text):
    # PyYAML reads `1e-4` as a string, and so does what `dvc exp run -S train.lr=1e-7` writes.
    raw = dict(params["train"], lr=text)
    assert from_params(TrainConfig, raw, "train").lr == pytest.approx(float(text))


def test_betas_become_a_tuple(params):
    assert isinstance(params["train"]["betas"], list)  # YAML gives a list
    betas = from_params(TrainConfig, params["train"], "train").betas
    assert isinstance(betas, tuple) and betas == tuple(params["train"]["betas"]) == (0.0, 0.99)


@pytest.mark.parametrize("section,key,value,message", [
    ("train", "lr", "fast", "train.lr: got 'fast', expected a number"),
    ("train", "lr", 0, "train.lr: got 0.0, must be greater than 0.0"),
    ("train", "lr", True, "train.lr: got True, expected a number"),
    ("train", "steps", 2.5, "train.steps: got 2.5, expected an integer"),
    ("train", "steps", 0, "train.steps: got 0, must be at least 1"),
    ("train", "batch_size", "128", "train.batch_size: got '128', expected an integer"),
    ("train", "loss", "wasserstein",
     "train.loss: got 'wasserstein', allowed: minimax, non_saturating, lsgan, hinge, wgan_gp"),
    ("train", "betas", [0.5], "train.betas: got [0.5], expected a list [a number, a number]"),
    ("train", "betas", [0.5, 1.5], "train.betas[1]: got 1.5, must be at most 0.9999"),
    ("train", "lr_d", "x", "train.lr_d: got 'x', expected a number or null"),
    ("train", "r1_weight", -1, "train.r1_weight: got -1.0, must be at least 0.0"),
    ("data", "dataset", "cifar", "data.dataset: got 'cifar', allowed: fashion_mnist, mnist, "
                                 "kmnist, image_folder"),
    ("data", "image_size", 4, "data.image_size: got 4, must be at least 8"),
    ("model", "arch", "resnet", "model.arch: got 'resnet', allowed: mlp, dcgan, resize_conv"),
    ("sample", "n", -1, "sample.n: got -1, must be at least 1"),
])
def test_bad_values_name_key_value_and_what_is_allowed(params, section, key, value, message):
    raw = dict(params[section], **{key: value})
    with pytest.raises(ConfigError) as info:
        preflight.check_params({**params, section: raw})
    assert str(info.value) == message


def test_unknown_key_lists_the_allowed_ones(params):
    raw = dict(params["train"], learning_rate=0.1)
    with pytest.raises(ConfigError, match=r"^train\.learning_rate: unknown key, allowed keys: "
                                          r"loss, optimizer, lr, "):
        from_params(TrainConfig, raw, "train")


def test_missing_key_is_named(params):
    raw = {k: v for k, v in params["data"].items() if k != "dataset"}
    with pytest.raises(ConfigError, match=r"^data\.dataset: missing, expected a string$"):
        from_params(DataConfig, raw, "data")


def test_missing_section_and_bad_seed():
    with pytest.raises(ConfigError, match="^train: missing section"):
        load_section({}, "train")
    with pytest.raises(ConfigError, match="^seed: got 'x', expected an integer$"):
        load_seed({"seed": "x"})


def test_unreadable_params_files(tmp_path):
    with pytest.raises(GanError, match="params file not found"):
        read_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(GanError, match=r"bad.yaml: not valid YAML \(line"):
        read_params(bad)


def test_a_new_model_key_at_its_default_changes_no_record_and_no_fingerprint():
    from gan import checkpoint, resume, train

    from conftest import tiny_split, unit_train

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithNewKey(ModelConfig):  # a model key added with the rule for newer keys
        new_key: float = dataclasses.field(default=0.0, metadata={"recorded_when_off": False})

    shape = dict(arch="mlp", latent_dim=8, g_channels=4, d_channels=4)
    old, newer, on = ModelConfig(**shape), WithNewKey(**shape), WithNewKey(**shape, new_key=0.5)
    cfg = unit_train(loss="non_saturating", optimizer="adam", lr=1e-3, batch_size=8, steps=1,
                     log_every=1, device="cpu")
    data = tiny_split()

    def record(model):
        return checkpoint.run_config(0, model, cfg, data)

    def parts(model):
        return resume.fingerprint(0, model, cfg, data, train.place(model, cfg))

    assert record(newer) == record(old) and parts(newer) == parts(old)
    assert record(on)["model"]["new_key"] == 0.5 and parts(on)["params"] != parts(old)["params"]
