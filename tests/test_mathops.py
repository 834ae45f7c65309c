"""Portable elementwise math (gan/mathops.py): nothing of the pipeline reaches MKL's vector
math in portable mode, whose bits differ between Intel and AMD CPUs.

On an AMD CPU MKL's vector math gives the same bits under every MKL_CBWR, so comparing
digests across MKL's branches (tests/test_numerics.py) cannot see it there; these tests
watch the ATen calls themselves (``mathops.watch``), on any machine, in this process.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gan import classifier, mathops, metrics, models, optim, sample, train
from gan.config import EvaluateConfig, ModelConfig, SampleConfig, load_section, read_params

from conftest import ROOT, tiny_split, unit_train


@pytest.fixture
def portable():
    mathops.set_portable(True)
    yield
    mathops.set_portable(False)


def test_the_watch_sees_each_kind_of_call_that_reaches_mkl():
    x = torch.rand(64, 8) + 0.1
    with mathops.watch() as seen:
        torch.tanh(x)
        x.sqrt()
        x.pow(0.5)
        torch.cdist(x, x)
        torch._foreach_sqrt([x])
        x.pow(2)  # not vector math
        torch.sigmoid(x)
        torch.rsqrt(x)
        torch.sqrt(torch.rand(3, dtype=torch.complex64))  # complex: ATen's own
    names = {s.split(".")[1] for s in seen}
    assert names == {"tanh", "sqrt", "pow", "_euclidean_dist", "_foreach_sqrt"}, seen


def test_portable_functions_stay_close_to_torchs(portable):
    x = torch.linspace(-12, 12, 20001)
    assert (mathops.tanh(x) - torch.tanh(x)).abs().max() < 3e-7
    assert mathops.tanh(x).min() >= -1 and mathops.tanh(x).max() <= 1
    leaf = x.clone().requires_grad_(True)
    mathops.tanh(leaf).sum().backward()
    assert (leaf.grad - (1 - torch.tanh(x) ** 2)).abs().max() < 1e-6
    positive = torch.rand(5000, dtype=torch.float64) * 100
    # IEEE's correctly rounded square root, in float32 too
    assert torch.equal(mathops.sqrt(positive), torch.from_numpy(np.sqrt(positive.numpy())))
    single = positive.float()  # float32's root, rounded once from the exact one
    assert torch.equal(mathops.sqrt(single),
                       torch.from_numpy(np.sqrt(single.double().numpy()).astype(np.float32)))
    a, b = torch.randn(50, 16), torch.randn(70, 16)
    assert torch.allclose(mathops.cdist(a, b), torch.cdist(a, b), atol=1e-4)
    assert mathops.cdist(a, a).diagonal().abs().max() < 1e-2
    small = torch.rand(20, dtype=torch.float64) + 0.01
    assert torch.allclose(mathops.log(small), small.log(), rtol=1e-15, atol=0)
    angles = torch.rand(20, dtype=torch.float64) * 2 - 1
    assert torch.allclose(mathops.acos(angles), angles.acos(), rtol=1e-15, atol=1e-16)
    assert torch.allclose(mathops.sin(angles), angles.sin(), rtol=1e-15, atol=1e-16)
    assert mathops.log(torch.tensor([0.0])).item() == -np.inf


def test_native_mode_calls_torchs_own():
    x = torch.linspace(-3, 3, 101)
    assert torch.equal(mathops.tanh(x), torch.tanh(x))
    assert torch.equal(mathops.sqrt(x.abs()), x.abs().sqrt())


def test_rmsprop_takes_ieee_roots_in_portable_mode(portable):
    start = torch.randn(30, 20, generator=torch.Generator().manual_seed(1))
    grads = [torch.randn(30, 20, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    for foreach in (False, True):
        w = start.clone().requires_grad_(True)
        opt = optim.RMSprop([w], lr=1e-2, foreach=foreach)
        with mathops.watch() as seen:
            for g in grads:
                w.grad = g.clone()
                opt.step()
        assert not seen, seen
        # RMSprop by hand, with NumPy's square root
        square = np.zeros((30, 20), dtype=np.float32)
        expected = start.numpy().copy()
        for g in grads:
            square = square * np.float32(0.99) + g.numpy() * g.numpy() * np.float32(0.01)
            expected = expected - np.float32(1e-2) * g.numpy() / (np.sqrt(square)
                                                                  + np.float32(1e-8))
        assert np.allclose(w.detach().numpy(), expected, rtol=1e-5, atol=1e-7)


MODELS = [ModelConfig(arch="mlp", latent_dim=8, g_channels=8, d_channels=8),
          ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4, spectral_norm=True),
          ModelConfig(arch="resize_conv", latent_dim=8, g_channels=4, d_channels=4,
                      conditional=True)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.arch)
@pytest.mark.parametrize("recipe", [
    dict(loss="non_saturating", optimizer="adam", ema_decay=0.99),
    dict(loss="wgan_gp", optimizer="rmsprop", r1_weight=0.0),
    dict(loss="hinge", optimizer="sgd", r1_weight=1.0, mode_seeking=1.0),
    dict(loss="lsgan", optimizer="adam", augment=("color", "translation", "cutout")),
], ids=["ns-adam-ema", "wgan_gp-rmsprop", "hinge-sgd-r1-ms", "lsgan-augment"])
def test_training_reaches_no_vector_math_in_portable_mode(portable, model, recipe):
    if recipe["loss"] == "wgan_gp":
        model = dataclasses.replace(model, d_norm="none" if model.arch == "mlp" else "layer")
    if recipe.get("mode_seeking") and not model.conditional:
        recipe = {k: v for k, v in recipe.items() if k != "mode_seeking"}
    cfg = unit_train(lr=2e-4, batch_size=8, steps=2, log_every=1, device="cpu", **recipe)
    with mathops.watch() as seen:
        result = train.train(model, cfg, 0, tiny_split(32), progress=False)
        g, _ = models.build(model, (1, 28, 28), 10)
        g.load_state_dict(result.checkpoint["generator"])
        sample.pictures(g.eval(), model, 10, SampleConfig(n=4, seed=0, real_vs_fake=4,
                                                          per_class=2),
                        tiny_split(8)["images"])
    assert not seen, seen


def test_native_training_does_reach_vector_math():
    """The watch sees what the portable runs avoid: torch's tanh in every generator."""
    cfg = unit_train(lr=2e-4, batch_size=8, steps=1, log_every=1, device="cpu",
                     loss="non_saturating", optimizer="adam")
    with mathops.watch() as seen:
        train.train(MODELS[1], cfg, 0, tiny_split(16), progress=False)
    assert "aten.tanh.default" in seen


def test_the_judge_and_the_scores_reach_no_vector_math_in_portable_mode(portable):
    raw = read_params(ROOT / "params.yaml")
    cfg = dataclasses.replace(load_section(raw, "classifier"), batch_size=16, steps=40,
                              allow_weak=True)
    train_split, test_split = tiny_split(64, seed=1), tiny_split(40, seed=2)
    with mathops.watch() as seen:
        judge = classifier.train_classifier(cfg, train_split, test_split).classifier
        images = tiny_split(24, seed=3)["images"]
        scores = metrics.score_images(images, None, judge.eval(), train_split, test_split,
                                      EvaluateConfig(n_samples=24, seed=0, batch_size=8))
    assert not seen, seen
    assert np.isfinite(scores["fid"]) and 0 <= scores["precision"] <= 1
