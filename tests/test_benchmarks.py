"""The benchmark scripts' own pieces: what they count and how they read their options."""

import pytest
import torch
from torch import nn

from benchmarks import early_quality, layer_time, malloc_ab
from gan.config import ModelConfig

from conftest import tiny_split, unit_train


def test_leaf_inputs_sees_every_leaf_layer_in_order_with_its_input():
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Sequential(nn.Linear(7, 3), nn.Tanh()))
    x = torch.randn(4, 5)
    seen = layer_time.leaf_inputs(net, x)
    assert [name for name, _, _ in seen] == ["0", "1", "2.0", "2.1"]
    assert [tuple(t.shape) for _, _, t in seen] == [(4, 5), (4, 7), (4, 7), (4, 3)]
    assert torch.equal(seen[0][2], x)
    assert torch.equal(seen[1][2], net[0](x).detach())


@pytest.mark.parametrize("input_grad", [True, False])
def test_time_layer_counts_the_backward_it_runs(input_grad):
    batch, inputs, outputs = 8, 16, 32
    layer = nn.Linear(inputs, outputs, bias=False)
    fwd, both, flops = layer_time.time_layer(layer, torch.randn(batch, inputs),
                                             torch.device("cpu"), repeats=3,
                                             input_grad=input_grad)
    # forward 2BIO; backward 2BIO for the weights, and 2BIO more for the input's gradient
    assert flops == 2 * batch * inputs * outputs * (3 if input_grad else 2)
    assert fwd > 0 and both > 0
    assert layer.weight.grad is not None


def test_early_quality_override_sets_keys_and_names_the_sections():
    params = {"seed": 0, "train": {"lr": 1.0}, "evaluate": {"seed": 0}}
    out = early_quality.override(params, ["train.lr=4.0e-4", "evaluate.seed=1",
                                          "train.betas=[0.0, 0.9]"])
    assert out["train"] == {"lr": 4e-4, "betas": [0.0, 0.9]} and out["evaluate"]["seed"] == 1
    for bad in ("train.lr", "lr=1", "model.arch=mlp", "seed.x=1"):
        with pytest.raises(SystemExit, match="section one of train, evaluate"):
            early_quality.override(params, [bad])


def test_malloc_ab_measures_the_timed_window_and_digests_the_weights():
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=4, d_channels=4)
    cfg = unit_train(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16,
                      steps=1, log_every=1, device="cpu", eval_every=0, snapshot_every=0)
    runs = [malloc_ab.measure(model, cfg, tiny_split(), window=3) for _ in range(2)]
    assert all(r["ms"] > 0 and r["faults"] >= 0 for r in runs)
    assert runs[0]["digest"] == runs[1]["digest"]  # same seed, same weights
    longer = malloc_ab.measure(model, cfg, tiny_split(), window=4)
    assert longer["digest"] != runs[0]["digest"]  # 8 steps, not 6
