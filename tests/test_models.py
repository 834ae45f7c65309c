import pytest
import torch
from torch.nn.utils import parametrize

from gan import data, losses, models, names, validate
from gan.config import DataConfig, ModelConfig, TrainConfig
from gan.errors import ConfigError

from conftest import unit_train

LATENT, BATCH, CLASSES = 16, 4, 10
ARCHS = list(models.ARCHS)
CONDITIONING = [None, "concat", "projection"]  # None: unconditional
SHAPES = [("mlp", 28, 1), ("mlp", 28, 3), ("dcgan", 28, 1), ("dcgan", 32, 3),
          ("dcgan", 64, 3), ("resize_conv", 28, 1), ("resize_conv", 32, 3), ("resize_conv", 64, 3)]


def cfg(arch: str, conditioning: str | None = None, **overrides) -> ModelConfig:
    return ModelConfig(arch=arch, latent_dim=LATENT, g_channels=8, d_channels=8,
                       conditional=conditioning is not None,
                       d_conditioning=conditioning or "projection", **overrides)


def train_cfg(loss: str, **overrides) -> TrainConfig:
    base = dict(optimizer="adam", lr=1e-3, batch_size=BATCH, steps=1, log_every=1)
    return unit_train(loss=loss, **{**base, **overrides})


def allowed_cfg(arch: str, conditioning: str | None, loss: str) -> ModelConfig:
    """A model config the loss allows, varying D's norm and spectral norm across losses."""
    uses_norm = names.ARCHS[arch].d_norm
    d_norm = {"wgan_gp": "layer" if uses_norm else "none", "lsgan": "none"}.get(loss, "batch")
    return cfg(arch, conditioning, d_norm=d_norm, spectral_norm=loss == "hinge")


def labels_for(conditioning: str | None, n: int = BATCH) -> torch.Tensor | None:
    return None if conditioning is None else torch.arange(n) % CLASSES


@pytest.mark.parametrize("arch,size,channels", SHAPES)
@pytest.mark.parametrize("conditioning", CONDITIONING)
def test_output_shapes_and_ranges(arch, size, channels, conditioning):
    torch.manual_seed(0)
    g, d = models.build(cfg(arch, conditioning), (channels, size, size), CLASSES)
    labels = labels_for(conditioning, 5)
    images = g(torch.randn(5, LATENT), labels)
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh out
    assert d(images, labels).shape == (5,)


@pytest.mark.parametrize("arch", ARCHS)
def test_unconditional_models_have_no_label_parameters(arch):
    g, d = models.build(cfg(arch), (1, 28, 28), CLASSES)
    keys = [*g.state_dict(), *d.state_dict()]
    assert not any("conditioning" in k or "parametrizations" in k for k in keys)
    g, d = models.build(cfg(arch, "concat", spectral_norm=True), (1, 28, 28), CLASSES)
    assert "conditioning.embed.weight" in g.state_dict()
    assert "conditioning.embed.weight" in d.state_dict()
    assert any("parametrizations.weight.original" in k for k in d.state_dict())


def test_dcgan_keeps_its_checkpoint_keys():
    g, d = models.build(cfg("dcgan"), (1, 28, 28))
    assert list(d.state_dict())[:4] == ["net.0.weight", "net.0.bias", "net.2.weight",
                                         "net.3.weight"]
    assert list(g.state_dict())[:2] == ["net.0.weight", "net.1.weight"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_conditional_outputs_depend_on_the_label(arch, conditioning):
    torch.manual_seed(0)
    g, d = models.build(cfg(arch, conditioning), (1, 28, 28), CLASSES)
    g.eval()
    d.eval()
    z = torch.randn(1, LATENT).repeat(2, 1)  # one latent, two classes
    labels = torch.tensor([3, 7])
    images = g(z, labels)
    assert not torch.allclose(images[0], images[1])
    scores = d(images[:1].repeat(2, 1, 1, 1), labels)  # one image, two classes
    assert not torch.allclose(scores[0], scores[1])
    with pytest.raises(ValueError, match="conditional model needs labels"):
        g(z, None)


@pytest.mark.parametrize("arch", ARCHS)
def test_spectral_norm_covers_the_projection_embedding(arch):
    torch.manual_seed(0)
    g, d = models.build(cfg(arch, "projection", spectral_norm=True), (1, 28, 28), CLASSES)
    embed = d.conditioning.embed  # (classes, features): the projection's V
    assert parametrize.is_parametrized(embed, "weight")
    d.train()
    for _ in range(3):  # a few more power iterations, as training would run
        d(torch.randn(BATCH, 1, 28, 28), labels_for("projection"))
    with torch.no_grad():
        sigma = torch.linalg.matrix_norm(embed.weight, ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    assert not parametrize.is_parametrized(g.conditioning.embed)  # G is never normalised
    # concat's label map is an input, not a factor of the features: left alone
    _, d = models.build(cfg(arch, "concat", spectral_norm=True), (1, 28, 28), CLASSES)
    assert not parametrize.is_parametrized(d.conditioning.embed)


@pytest.mark.parametrize("arch,norm", [("dcgan", "layer"), ("dcgan", "none"),
                                       ("resize_conv", "layer"), ("resize_conv", "none")])
def test_norm_free_discriminators_treat_samples_alone(arch, norm):
    # With layer or no norm, a sample's score does not depend on the rest of its batch.
    torch.manual_seed(0)
    _, d = models.build(cfg(arch, d_norm=norm, dropout=0.0), (1, 28, 28))
    x = torch.randn(6, 1, 28, 28)
    torch.testing.assert_close(d(x)[:2], d(x[:2]))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


def test_resize_conv_uses_kernel_size_widths_and_dropout():
    _, d = models.build(cfg("resize_conv", kernel_size=3, dropout=0.25), (1, 28, 28))
    g, _ = models.build(cfg("resize_conv", kernel_size=3), (1, 28, 28))
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3)]
    assert [c.out_channels for c in convs] == [8, 16]
    assert [m.p for m in d.modules() if isinstance(m, torch.nn.Dropout)] == [0.25, 0.25]
    assert g.map_shape == (32, 7, 7)  # g_channels * 2**2 at the 7 px map
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())


@pytest.mark.parametrize("arch,size", [("dcgan", 30), ("resize_conv", 36)])
def test_conv_archs_refuse_sizes_off_their_ladder(arch, size):
    with pytest.raises(ConfigError, match=f"data.image_size: got {size}, {arch} needs"):
        models.build(cfg(arch), (1, size, size))


def test_init_follows_radford():
    torch.manual_seed(0)
    g, _ = models.build(ModelConfig(arch="dcgan", latent_dim=100, g_channels=64,
                                    d_channels=64), (1, 28, 28))
    weight = g.net[0].weight
    assert abs(weight.mean().item()) < 1e-3
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)


def one_step(model_cfg: ModelConfig, loss_name: str, shape: tuple[int, int, int],
             conditioning: str | None):
    """One D step (with the penalty or smoothing the loss takes) and one G step."""
    torch.manual_seed(0)
    g, d = models.build(model_cfg, shape, CLASSES)
    loss = losses.get(loss_name)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    g_before = [p.detach().clone() for p in g.parameters()]
    d_before = [p.detach().clone() for p in d.parameters()]
    real = torch.rand(BATCH, *shape) * 2 - 1
    labels = labels_for(conditioning)

    with torch.no_grad():
        fake = g(torch.randn(BATCH, LATENT), labels)
    real_target = 0.9 if loss.label_smoothing else 1.0
    d_loss = loss.d(d(real, labels), d(fake, labels), real_target=real_target)
    if loss.gradient_penalty:
        d_loss = d_loss + 10.0 * losses.gradient_penalty(d, real, fake, labels)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    d_mid = [p.detach().clone() for p in d.parameters()]
    g_loss = loss.g(d(g(torch.randn(BATCH, LATENT), labels), labels))
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


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("conditioning", CONDITIONING)
@pytest.mark.parametrize("loss_name", list(losses.LOSSES))
def test_one_step_changes_both_networks(arch, conditioning, loss_name):
    model_cfg = allowed_cfg(arch, conditioning, loss_name)
    smoothing = 0.1 if losses.get(loss_name).label_smoothing else 0.0
    validate.check_run(model_cfg, train_cfg(loss_name, label_smoothing=smoothing))
    one_step(model_cfg, loss_name, (1, 28, 28), conditioning)


@pytest.mark.parametrize("arch,size,channels", [s for s in SHAPES if s[1] != 28])
@pytest.mark.parametrize("loss_name", ["non_saturating", "wgan_gp"])
def test_one_step_at_larger_rgb_sizes(arch, size, channels, loss_name):
    one_step(allowed_cfg(arch, "projection", loss_name), loss_name, (channels, size, size),
             "projection")


@pytest.mark.parametrize("model,train,data,message", [
    (dict(arch="dcgan"), dict(loss="wgan_gp"), None,
     "train.loss: wgan_gp penalises per-sample gradients, which batch norm in D couples; "
     "set model.d_norm to layer or none"),
    (dict(arch="resize_conv"), dict(loss="wgan_gp"), None, "which batch norm in D couples"),
    (dict(arch="dcgan", d_norm="layer"), dict(loss="wgan_gp", gp_weight=0.0), None,
     "train.gp_weight: got 0.0, but wgan_gp without its penalty"),
    (dict(arch="mlp", d_norm="layer"), dict(loss="non_saturating"), None,
     "model.d_norm: got 'layer', but mlp's discriminator has no normalisation layers"),
    (dict(arch="dcgan"), dict(loss="hinge", label_smoothing=0.1), None,
     "train.label_smoothing: got 0.1, but hinge has no probability target to smooth "
     "(only minimax, non_saturating); set it to 0.0"),
    (dict(arch="dcgan", d_norm="none"), dict(loss="wgan_gp", label_smoothing=0.2), None,
     "but wgan_gp has no probability target"),
    (dict(arch="mlp"), dict(loss="lsgan", label_smoothing=0.1), None, "but lsgan has no"),
    (dict(arch="dcgan"), dict(loss="hinge"), dict(dataset="mnist", image_size=30),
     "data.image_size: got 30, dcgan needs 7 or 4 times a power of two"),
    (dict(arch="resize_conv"), dict(loss="hinge"), dict(dataset="mnist", image_size=16 * 3),
     "data.image_size: got 48, resize_conv needs 7 or 8 times a power of two"),
    (dict(arch="mlp"), dict(loss="hinge"), dict(dataset="image_folder", image_size=28, path=None),
     "data.path: missing; data.dataset: image_folder reads the folder it names"),
    (dict(arch="mlp"), dict(loss="hinge"), dict(dataset="mnist", image_size=28, channels=3),
     "data.channels: got 3, but mnist is grayscale"),
    (dict(arch="dcgan"), dict(loss="hinge", mode_seeking=1.0, batch_size=1), None,
     "train.mode_seeking: got 1.0, but it pairs images within each process's batch, which "
     "has 1; raise train.batch_size to at least 2 or set it to 0.0"),
    (dict(arch="dcgan"), dict(loss="hinge", mode_seeking=0.5, batch_size=6, devices=4), None,
     "which has 1; raise train.batch_size to at least 8"),
])
def test_refused_combinations_say_why(model, train, data, message):
    data_cfg = DataConfig(**(data or {"dataset": "mnist", "image_size": 28}))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(cfg(**model), train_cfg(**train), data_cfg)


@pytest.mark.parametrize("model,train", [
    (dict(arch="mlp"), dict(loss="wgan_gp")),  # mlp's D has no batch norm to couple
    (dict(arch="dcgan", d_norm="none", spectral_norm=True), dict(loss="wgan_gp")),
    (dict(arch="resize_conv"), dict(loss="minimax", label_smoothing=0.1)),
    (dict(arch="dcgan"), dict(loss="hinge", mode_seeking=1.0, batch_size=2)),
])
def test_sensible_combinations_pass(model, train):
    check(cfg(**model), train_cfg(**train),
          DataConfig(dataset="image_folder", image_size=32, path="x", channels=3))


def check(model_cfg: ModelConfig, train: TrainConfig, data_cfg: DataConfig) -> None:
    """What preflight.check_params does with the data, model and train sections."""
    data.check_config(data_cfg)
    validate.check_run(model_cfg, train, data_cfg.image_size)


def test_latent_noise_kinds():
    gen = torch.Generator().manual_seed(0)
    uniform = models.latent_noise("uniform", 2000, 8, generator=gen)
    assert uniform.shape == (2000, 8)
    assert uniform.min() >= -1 and uniform.max() <= 1 and uniform.min() < -0.99
    normal = models.latent_noise("normal", 2000, 8, generator=gen)
    assert normal.abs().max() > 2  # not bounded like the uniform
    again = models.latent_noise("normal", 3, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, torch.randn(3, 4, generator=torch.Generator()
                                                  .manual_seed(1)))




@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [False, True])
def test_dcgan_latent_layer_is_the_transposed_convolution_it_replaces(layout, bias):
    from gan.models.dcgan import LatentToMap

    torch.manual_seed(0)
    fast = LatentToMap(LATENT, 6, 7)
    if bias:
        fast.bias = torch.nn.Parameter(torch.randn(6))
    reference = torch.nn.ConvTranspose2d(LATENT, 6, 7, 1, 0, bias=bias)
    reference.load_state_dict(fast.state_dict())  # the same parameters and keys
    fast.to(memory_format=layout)
    reference.to(memory_format=layout)
    z = torch.randn(BATCH, LATENT, 1, 1)
    out, want = fast(z), reference(z)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    assert out.is_contiguous(memory_format=layout)
    grad = torch.randn_like(want)
    zf, zr = z.clone().requires_grad_(), z.clone().requires_grad_()
    fast(zf).backward(grad)
    reference(zr).backward(grad)
    torch.testing.assert_close(fast.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zf.grad, zr.grad, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="1, 1"):
        fast(torch.randn(BATCH, LATENT, 2, 2))
