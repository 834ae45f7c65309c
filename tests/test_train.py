import copy

import pytest
import torch
from torch import nn

from gan import checkpoint, losses, models, runtime, sample, state, train
from gan.checkpoint import save_checkpoint
from gan.config import ModelConfig, TrainConfig
from gan.errors import GanError
from gan.hooks import Every

from conftest import tiny_split, unit_train

MODEL = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4)


def train_cfg(**overrides) -> TrainConfig:
    base = dict(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16, steps=6,
                log_every=2, device="cpu")
    return unit_train(**{**base, **overrides})


def test_history_has_one_record_per_log_interval():
    logged = []
    result = train.train(MODEL, train_cfg(steps=5), 0, tiny_split(),
                         on_log=lambda s, r: logged.append(s), progress=False)
    assert logged == [2, 4, 5]
    assert [h["step"] for h in result.history] == [2, 4, 5]
    assert set(result.history[0]) == {"step", *train.LOG_KEYS}
    assert 0 < result.history[-1]["d_real"] < 1  # a probability for the BCE losses
    assert 0 <= result.history[-1]["d_acc_fake"] <= 1


def test_periodic_hooks_see_the_generator_in_eval_mode():
    seen = []

    def hook(step, generator):
        seen.append((step, generator.training))

    train.train(MODEL, train_cfg(steps=5), 0, tiny_split(), hooks=(Every(2, hook),),
                progress=False)
    assert seen == [(2, False), (4, False), (5, False)]


def test_same_seed_same_bits_other_seed_differs():
    a = train.train(MODEL, train_cfg(), 3, tiny_split(), progress=False).checkpoint
    b = train.train(MODEL, train_cfg(), 3, tiny_split(), progress=False).checkpoint
    c = train.train(MODEL, train_cfg(), 4, tiny_split(), progress=False).checkpoint
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key
    assert any(not torch.equal(a["generator"][k], c["generator"][k]) for k in a["generator"])


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_optimizers_and_d_steps_train(optimizer):
    result = train.train(MODEL, train_cfg(optimizer=optimizer, d_steps=2, lr_d=1e-3), 0,
                         tiny_split(), progress=False)
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in result.history)


def test_divergence_stops_with_the_step_named():
    with pytest.raises(GanError, match=r"became nan by step 2; the run diverged"):
        poisoned = {**tiny_split(), "images": tiny_split()["images"] * float("nan")}
        train.train(MODEL, train_cfg(), 0, poisoned, progress=False)


def test_checkpoint_round_trip_rebuilds_the_generator(tmp_path):
    result = train.train(MODEL, train_cfg(), 0, tiny_split(), progress=False)
    path = tmp_path / "ckpt" / "gan.pt"
    save_checkpoint(result.checkpoint, path)
    assert [p.name for p in path.parent.iterdir()] == ["gan.pt"]  # no temporary left
    trained = checkpoint.load_generator(path)
    z = sample.fixed_latent(4, MODEL.latent_dim, seed=1)
    torch.testing.assert_close(sample.generate(trained.generator, z),
                               sample.generate(result.generator, z))
    assert trained.model == MODEL and trained.image_shape == (1, 28, 28)
    # The checkpoint holds weights and config only: no log, no optimizer or RNG state.
    assert set(result.checkpoint) == {"format", "config", "step", "generator",
                                      "generator_ema", "discriminator"}


def test_foreign_and_missing_checkpoints(tmp_path):
    with pytest.raises(GanError, match="checkpoint not found"):
        checkpoint.load_generator(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GanError, match="not a readable checkpoint"):
        checkpoint.load_generator(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(GanError, match="not a checkpoint of this project"):
        checkpoint.load_generator(tmp_path / "other.pt")


def test_checkpoint_whose_weights_do_not_fit_its_arch(tmp_path):
    result = train.train(MODEL, train_cfg(steps=1), 0, tiny_split(), progress=False)
    ckpt = result.checkpoint
    ckpt["config"]["model"]["arch"] = "mlp"
    save_checkpoint(ckpt, tmp_path / "gan.pt")
    with pytest.raises(GanError, match="generator weights do not fit model.arch 'mlp'"):
        checkpoint.load_generator(tmp_path / "gan.pt")


def test_named_device_must_exist():
    if not torch.cuda.is_available():
        with pytest.raises(GanError, match="train.device: got 'cuda', but no cuda device"):
            runtime.select_device("cuda")
    assert runtime.select_device("cpu") == torch.device("cpu")


def test_sample_grid_size():
    images = torch.zeros(16, 1, 28, 28)
    grid = sample.to_grid_image(images)
    assert grid.size == (4 * 30 + 2, 4 * 30 + 2)  # 4x4 tiles of 28 px with 2 px padding
    assert grid.mode == "L"
    assert sample.to_grid_image(torch.zeros(6, 3, 8, 8), nrow=3).mode == "RGB"


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "resize_conv"])
def test_conditional_wgan_gp_trains_through_the_loop(arch):
    model = ModelConfig(arch=arch, conditional=True, latent_dim=8, g_channels=4,
                        d_channels=4, d_norm="none" if arch != "mlp" else "batch")
    result = train.train(model, train_cfg(loss="wgan_gp", steps=3), 0, tiny_split(),
                         progress=False)
    assert all(torch.isfinite(torch.tensor(h["d_loss"])) for h in result.history)
    images = result.generator(torch.randn(4, 8), torch.tensor([0, 1, 2, 3]))
    assert images.shape == (4, 1, 28, 28)


def test_ema_generator_is_returned_and_differs_from_the_raw_one(tmp_path):
    result = train.train(MODEL, train_cfg(ema_decay=0.9, steps=8), 0, tiny_split(),
                         progress=False)
    ckpt = result.checkpoint
    raw, ema = ckpt["generator"], ckpt["generator_ema"]
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    save_checkpoint(ckpt, tmp_path / "gan.pt")
    loaded = checkpoint.load_generator(tmp_path / "gan.pt").generator
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, ema[key])
    raw_loaded = checkpoint.load_generator(tmp_path / "gan.pt", prefer_ema=False).generator
    for key, value in raw_loaded.state_dict().items():
        torch.testing.assert_close(value, raw[key])


def test_linear_lr_decay_reaches_zero():
    result = train.train(MODEL, train_cfg(lr_decay="linear", steps=4, label_smoothing=0.1),
                         0, tiny_split(), progress=False)
    for opt in ("opt_g", "opt_d"):
        assert result.state[opt]["param_groups"][0]["lr"] == pytest.approx(0.0)


@pytest.mark.parametrize("clip", [None, 1e-7])
def test_gradient_clipping_bounds_each_update(clip):
    # Plain SGD (momentum 0) at lr 1 moves each weight by exactly its clipped gradient.
    cfg = train_cfg(optimizer="sgd", lr=1.0, betas=(0.0, 0.999), steps=1, grad_clip=clip)
    runtime.seed_everything(0)
    from gan import models
    g0, _ = models.build(MODEL, (1, 28, 28), 10)
    result = train.train(MODEL, cfg, 0, tiny_split(), progress=False)
    moved = max((result.checkpoint["generator"][k] - v).abs().max().item()
                for k, v in g0.state_dict().items()
                if v.ndim > 1)  # conv weights (~0.02): float32 rounds them at ~2e-9
    if clip is None:
        assert moved > 3e-7  # well above the clip below: clipping has work to do
    else:
        assert 0 < moved <= clip * 1.05


def test_uniform_noise_changes_the_run():
    a = train.train(MODEL, train_cfg(steps=2), 0, tiny_split(), progress=False).checkpoint
    uniform = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4,
                          noise="uniform")
    b = train.train(uniform, train_cfg(steps=2), 0, tiny_split(), progress=False).checkpoint
    assert any(not torch.equal(a["generator"][k], b["generator"][k]) for k in a["generator"])


def test_refused_combination_stops_before_training():
    with pytest.raises(GanError, match="train.loss: wgan_gp"):
        train.train(MODEL, train_cfg(loss="wgan_gp"), 0, tiny_split(), progress=False)


def test_mode_seeking_pairs_classes_in_the_g_step_and_changes_the_run(monkeypatch):
    model = ModelConfig(arch="dcgan", conditional=True, d_conditioning="concat",
                        latent_dim=8, g_channels=4, d_channels=4)
    asked: list[torch.Tensor] = []  # the classes of each G step, where G gets gradients
    build = models.build

    def spying_build(*args, **kwargs):
        generator, discriminator = build(*args, **kwargs)
        generator.register_forward_pre_hook(
            lambda module, inputs: asked.append(inputs[1].clone())
            if torch.is_grad_enabled() else None)
        return generator, discriminator

    monkeypatch.setattr(models, "build", spying_build)
    plain = train.train(model, train_cfg(steps=3), 0, tiny_split(), progress=False)
    assert len(asked) == 3
    assert not any(torch.equal(y[:8], y[8:]) for y in asked)  # 16 random classes, unpaired
    asked.clear()
    seeking = train.train(model, train_cfg(steps=3, mode_seeking=1.0), 0, tiny_split(),
                          progress=False)
    assert len(asked) == 3
    assert all(torch.equal(y[:8], y[8:]) for y in asked)
    assert any(not torch.equal(plain.checkpoint["generator"][k], seeking.checkpoint["generator"][k])
               for k in plain.checkpoint["generator"])


@pytest.mark.parametrize("d_steps", [1, 2])
def test_reuse_fakes_runs_one_g_forward_per_step_and_scores_the_same_fakes(monkeypatch, d_steps):
    calls: list[tuple[bool, torch.Tensor]] = []  # (grad enabled, output) of each G forward
    scored: list[torch.Tensor] = []  # what D scores with gradients off for its weights
    build = models.build

    def spying_build(*args, **kwargs):
        generator, discriminator = build(*args, **kwargs)
        generator.register_forward_hook(
            lambda module, inputs, output: calls.append((torch.is_grad_enabled(), output)))
        discriminator.register_forward_pre_hook(
            lambda module, inputs: scored.append(inputs[0]) if inputs[0].requires_grad
            else None)
        return generator, discriminator

    monkeypatch.setattr(models, "build", spying_build)
    steps = 3
    reused = train.train(MODEL, train_cfg(steps=steps, d_steps=d_steps), 0, tiny_split(),
                         progress=False)
    # d_steps forwards per step, the last with a graph, and G's loss scores that very batch.
    assert len(calls) == steps * d_steps
    assert [grad for grad, _ in calls] == ([False] * (d_steps - 1) + [True]) * steps
    assert len(scored) == steps
    assert all(s is calls[(i + 1) * d_steps - 1][1] for i, s in enumerate(scored))

    calls.clear()
    scored.clear()
    fresh = train.train(MODEL, train_cfg(steps=steps, d_steps=d_steps, reuse_fakes=False), 0,
                        tiny_split(), progress=False)
    assert [grad for grad, _ in calls] == ([False] * d_steps + [True]) * steps
    assert all(s is calls[(i + 1) * (d_steps + 1) - 1][1] for i, s in enumerate(scored))
    assert any(not torch.equal(reused.checkpoint["generator"][k], fresh.checkpoint["generator"][k])
               for k in reused.checkpoint["generator"])


def test_g_step_computes_no_gradient_for_d_weights(monkeypatch):
    received: list[str] = []  # one entry per gradient computed for a D weight
    build = models.build

    def spying_build(*args, **kwargs):
        generator, discriminator = build(*args, **kwargs)
        for name, param in discriminator.named_parameters():
            param.register_hook(lambda grad, name=name: received.append(name))
        return generator, discriminator

    monkeypatch.setattr(models, "build", spying_build)
    result = train.train(MODEL, train_cfg(steps=3, d_steps=2), 0, tiny_split(), progress=False)
    weights = len(list(result.discriminator.parameters()))
    # D's step computes each weight's gradient once per D step; G's step computes none.
    assert len(received) == 3 * 2 * weights
    assert all(p.requires_grad for p in result.discriminator.parameters())


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batch_statistics(generator: nn.Module, z: torch.Tensor,
                     labels: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mean, unbiased variance) per channel of each batch-norm layer's input, on a copy of
    ``generator`` whose every layer normalises by its batch (train mode), as BN estimates."""
    probe = copy.deepcopy(generator).train()
    stats = []

    def record(module, inputs):
        x = inputs[0].transpose(0, 1).flatten(1)  # (C, B) or (C, B * H * W)
        stats.append((x.mean(dim=1), x.var(dim=1)))

    for norm in batch_norm_layers(probe):
        norm.register_forward_pre_hook(record)
    with torch.no_grad():
        probe(z, labels)
    return stats


def statistics_error(generator: nn.Module, model: ModelConfig) -> float:
    """How far the running statistics of ``generator`` are from the batch statistics its
    weights give on 4,096 fresh latents: the mean over a layer's channels of |mean gap| / std
    and of |variance gap| / variance, the worst of both over the layers. (A mean over the
    channels: with 16-image batches single channels of the MLP's 1,024 stray by up to 0.45.)
    """
    gen = torch.Generator().manual_seed(99)
    z = torch.randn(4096, model.latent_dim, generator=gen)
    labels = torch.randint(10, (4096,), generator=gen) if model.conditional else None
    worst = 0.0
    norms = batch_norm_layers(generator)
    for norm, (mean, var) in zip(norms, batch_statistics(generator, z, labels), strict=True):
        worst = max(worst, ((norm.running_mean - mean).abs() / var.sqrt()).mean().item(),
                    ((norm.running_var - var).abs() / var).mean().item())
    return worst


@pytest.mark.parametrize("model", [
    MODEL, ModelConfig(arch="mlp", conditional=True, latent_dim=8, g_channels=4, d_channels=4),
], ids=["dcgan", "conditional-mlp"])
def test_ema_batch_norm_statistics_are_those_of_the_ema_weights(model):
    seen = []

    def hook(step, generator):  # snapshots and FIDs use the EMA G's running statistics
        seen.append(statistics_error(generator, model))

    result = train.train(model, train_cfg(ema_decay=0.9, steps=9), 0, tiny_split(),
                         hooks=(Every(4, hook),), progress=False)
    assert len(seen) == 3  # steps 4, 8, 9
    assert max(seen) < 0.15, seen
    assert statistics_error(result.generator, model) < 0.15
    ema = result.checkpoint["generator_ema"]  # the checkpoint holds the same statistics
    for key, value in result.generator.state_dict().items():
        assert torch.equal(value, ema[key]), key


def test_ema_statistics_pass_leaves_training_untouched():
    plain = train.train(MODEL, train_cfg(ema_decay=0.9, steps=6), 0, tiny_split(),
                        progress=False).checkpoint
    hooked = train.train(MODEL, train_cfg(ema_decay=0.9, steps=6), 0, tiny_split(),
                         hooks=(Every(1, lambda step, g: None),), progress=False).checkpoint
    for part in ("generator", "discriminator", "generator_ema"):
        for key, value in plain[part].items():
            assert torch.equal(value, hooked[part][key]), (part, key)


def test_conditional_penalty_scores_each_pair_under_the_class_of_both(monkeypatch):
    # Each interpolate of the gradient penalty mixes a real image and a fake; D scores it
    # under one label, which must be both the real image's class and the fake's.
    model = ModelConfig(arch="dcgan", conditional=True, latent_dim=8, g_channels=4,
                        d_channels=4, d_norm="none")
    split = tiny_split()
    # The classes of each D step's fakes: with reuse_fakes (the default) every G forward is
    # a D step's, the last of each step with gradients.
    made: list[torch.Tensor] = []
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (real's classes, penalty labels)
    build, penalty = models.build, losses.gradient_penalty

    def spying_build(*args, **kwargs):
        generator, discriminator = build(*args, **kwargs)
        generator.register_forward_pre_hook(
            lambda module, inputs: made.append(inputs[1].clone()))
        return generator, discriminator

    def spying_penalty(discriminator, real, fake, labels=None, alpha=None):
        rows = (real[:, None] == split["images"][None]).flatten(2).all(dim=2)  # (B, N)
        pairs.append((split["labels"][rows.float().argmax(dim=1)], labels.clone()))
        return penalty(discriminator, real, fake, labels, alpha)

    monkeypatch.setattr(models, "build", spying_build)
    monkeypatch.setattr(losses, "gradient_penalty", spying_penalty)
    train.train(model, train_cfg(loss="wgan_gp", steps=3, d_steps=2), 0, split, progress=False)
    assert len(made) == len(pairs) == 6
    for fake_classes, (real_classes, labels) in zip(made, pairs, strict=True):
        assert torch.equal(labels, real_classes)
        assert torch.equal(labels, fake_classes)


def test_r1_penalty_joins_every_d_step_on_the_real_batch(monkeypatch):
    model = ModelConfig(arch="dcgan", conditional=True, latent_dim=8, g_channels=4,
                        d_channels=4)
    split = tiny_split()
    calls: list[tuple[type, torch.Tensor, torch.Tensor]] = []  # (D, real's classes, labels)
    penalty = losses.r1_penalty

    def spying_r1(discriminator, real, labels=None):
        rows = (real[:, None] == split["images"][None]).flatten(2).all(dim=2)  # (B, N)
        assert rows.any(dim=1).all()  # real training images, not fakes or mixes
        calls.append((type(discriminator), split["labels"][rows.float().argmax(dim=1)],
                      labels.clone()))
        return penalty(discriminator, real, labels)

    monkeypatch.setattr(losses, "r1_penalty", spying_r1)
    plain = train.train(model, train_cfg(steps=2, d_steps=2), 0, split, progress=False)
    assert calls == []  # r1_weight 0: never computed
    r1 = train.train(model, train_cfg(steps=2, d_steps=2, r1_weight=10.0), 0, split,
                     progress=False)
    assert len(calls) == 4
    for d_type, classes, labels in calls:
        assert d_type is models.dcgan.Discriminator  # the plain D: double backward
        assert torch.equal(labels, classes)
    assert any(not torch.equal(plain.checkpoint["discriminator"][k], v)
               for k, v in r1.checkpoint["discriminator"].items())


def test_r1_weight_adds_half_itself_times_the_penalty_to_d_loss(monkeypatch):
    # A constant penalty moves no weight, so both runs train alike and D's loss differs
    # by exactly r1_weight / 2 times it.
    monkeypatch.setattr(losses, "r1_penalty", lambda discriminator, real, labels=None:
                        torch.tensor(4.0))
    base = train.train(MODEL, train_cfg(steps=2, log_every=1), 0, tiny_split(),
                       progress=False).history
    weighted = train.train(MODEL, train_cfg(steps=2, log_every=1, r1_weight=3.0), 0,
                           tiny_split(), progress=False).history
    assert len(base) == len(weighted) == 2
    for a, b in zip(base, weighted, strict=True):
        assert b["d_loss"] == pytest.approx(a["d_loss"] + 3.0 / 2 * 4.0)
        assert b["g_loss"] == a["g_loss"]


def test_ema_warm_up_forgets_the_initial_weights_then_settles_at_the_decay():
    update = state.ema_update(0.999)
    average, current = [torch.zeros(4)], [torch.ones(4)]
    for n in range(1, 500):  # AveragedModel copies the weights at n = 0, then calls this
        update(average, current, torch.tensor(n))
    # What is left of the initial (zero) weights: 1 - average. A fixed 0.999 keeps 0.999**499.
    assert 1 - average[0][0].item() < 0.02 < 0.999**499
    late = [torch.zeros(4)]
    update(late, current, torch.tensor(1_000_000))
    assert late[0][0].item() == pytest.approx(1 - 0.999, rel=1e-4)
    early = [torch.zeros(4)]
    update(early, current, torch.tensor(1))
    assert early[0][0].item() == pytest.approx(1 - 2 / 11)


def test_ema_warmup_sets_how_fast_the_average_follows_early_on():
    # After n updates the rate is min(decay, (1 + n) / (warmup + n)).
    for warmup, n in ((25.0, 1), (25.0, 500), (50.0, 100)):
        average = [torch.zeros(3)]
        state.ema_update(0.999, warmup)(average, [torch.ones(3)], torch.tensor(n))
        assert average[0][0].item() == pytest.approx(1 - (1 + n) / (warmup + n), rel=1e-5)
    # Past n = 1000 * (warmup - 1) the decay caps it.
    capped = [torch.zeros(3)]
    state.ema_update(0.999, 25.0)(capped, [torch.ones(3)], torch.tensor(30_000))
    assert capped[0][0].item() == pytest.approx(0.001, rel=1e-4)


def test_train_ema_warmup_reaches_the_ema_generator():
    ckpts = [train.train(MODEL, train_cfg(ema_decay=0.999, ema_warmup=w, steps=5), 0,
                         tiny_split(), progress=False).checkpoint for w in (10.0, 40.0)]
    # Same training, different averages.
    for part in ("generator", "discriminator"):
        for key, value in ckpts[0][part].items():
            assert torch.equal(value, ckpts[1][part][key]), (part, key)
    ema = [c["generator_ema"] for c in ckpts]
    assert any(not torch.equal(ema[0][k], ema[1][k]) for k in ema[0]
               if ema[0][k].is_floating_point())
