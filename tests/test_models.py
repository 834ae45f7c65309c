import pytest
import torch

from gan import losses, models
from gan.config import ConfigError, ModelConfig

CASES = [("mlp", 28, 1), ("dcgan", 28, 1), ("dcgan", 32, 1), ("dcgan", 64, 3)]


def cfg(arch: str) -> ModelConfig:
    return ModelConfig(arch=arch, latent_dim=16, g_channels=8, d_channels=8)


@pytest.mark.parametrize("arch,size,channels", CASES)
def test_output_shapes_and_ranges(arch, size, channels):
    torch.manual_seed(0)
    g, d = models.build(cfg(arch), (channels, size, size))
    images = g(torch.randn(5, 16))
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh out
    assert d(images).shape == (5,)


def test_dcgan_refuses_sizes_off_its_ladder():
    with pytest.raises(ConfigError, match="data.image_size: got 30, dcgan needs"):
        models.build(cfg("dcgan"), (1, 30, 30))


def test_init_follows_radford():
    torch.manual_seed(0)
    g, _ = models.build(ModelConfig(arch="dcgan", latent_dim=100, g_channels=64,
                                    d_channels=64), (1, 28, 28))
    weight = g.net[0].weight
    assert abs(weight.mean().item()) < 1e-3
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("arch,size,channels", CASES)
@pytest.mark.parametrize("loss_name", list(losses.LOSSES))
def test_one_step_changes_both_networks(arch, size, channels, loss_name):
    torch.manual_seed(0)
    g, d = models.build(cfg(arch), (channels, size, size))
    loss = losses.get(loss_name)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    g_before = [p.detach().clone() for p in g.parameters()]
    d_before = [p.detach().clone() for p in d.parameters()]
    real = torch.rand(4, channels, size, size) * 2 - 1

    with torch.no_grad():
        fake = g(torch.randn(4, 16))
    d_loss = loss.d(d(real), d(fake))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    d_mid = [p.detach().clone() for p in d.parameters()]
    g_loss = loss.g(d(g(torch.randn(4, 16))))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()

    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    # Every weight matrix moves. (Biases may not: under the hinge loss the output bias's
    # gradient is exactly -1 + 1 = 0 while every sample lies inside the margin.)
    for before, net in ((g_before, g), (d_before, d)):
        pairs = zip(before, net.parameters(), strict=True)
        assert all(not torch.equal(a, b) for a, b in pairs if a.ndim > 1)
    # the G step moves only G
    assert all(torch.equal(a, b) for a, b in zip(d_mid, d.parameters(), strict=True))


def test_discriminator_accuracy_threshold_matches_the_loss():
    # P(real) = 0.5 at logit 0 for BCE; lsgan's targets are 0 and 1, so the midpoint is 0.5.
    assert losses.get("non_saturating").threshold == 0.0
    assert losses.get("lsgan").threshold == 0.5
