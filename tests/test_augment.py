"""train.augment: DiffAugment's three policies, their draws, and runs that use them."""

import pytest
import torch

from gan import augment, train
from gan.config import ModelConfig, TrainConfig, from_params, to_record
from gan.errors import ConfigError
from gan.resume import Resume
from gan.validate import check_run

from conftest import tiny_split, unit_train

MODEL = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4)
ALL = ("color", "translation", "cutout")


def train_cfg(**overrides) -> TrainConfig:
    base = dict(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16, steps=6,
                log_every=2, device="cpu", augment=ALL)
    return unit_train(**{**base, **overrides})


class Fixed:
    """Draws that hand out given values, to check a policy's arithmetic."""

    def __init__(self, uniforms=(), integers=()):
        self.uniforms, self.ints = list(uniforms), list(integers)

    def uniform(self, low, high, like):
        value = torch.as_tensor(self.uniforms.pop(0), dtype=like.dtype)
        assert ((low <= value) & (value <= high)).all()
        return value.view(-1, 1, 1, 1)

    def integers(self, low, high):
        value = torch.as_tensor(self.ints.pop(0))
        assert ((low <= value) & (value < high)).all()
        return value.view(-1, 1, 1)


def test_translation_moves_each_image_by_its_own_shift_and_fills_zeros():
    x = torch.zeros(2, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    out = augment.translation(x, Fixed(integers=([1, -1], [0, 1])))  # (dy, dx) per image
    # out[i, j] = x[i + dy, j + dx]: the pixel at (4, 4) appears at (4 - dy, 4 - dx).
    assert out[0, 0].nonzero().tolist() == [[3, 4]]
    assert out[1, 0].nonzero().tolist() == [[5, 3]]
    ones = augment.translation(torch.ones(1, 1, 8, 8), Fixed(integers=([1], [-1])))
    assert ones[0, 0, -1].sum() == 0 and ones[0, 0, :, 0].sum() == 0  # shifted in: zeros
    assert ones.sum() == 7 * 7


def test_translation_shift_reaches_one_eighth_of_the_side():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    out = augment.translation(x, augment.Draws(gen, 400, None))
    rows = out[:, 0].flatten(1).argmax(dim=1) // 28
    # 28 / 8 = 3.5, rounded to 4 pixels each way: 9 possible rows, all drawn.
    assert sorted(set((14 - rows).tolist())) == list(range(-4, 5))


def test_cutout_zeroes_a_square_of_half_the_side():
    x = torch.ones(2, 3, 8, 8)
    out = augment.cutout(x, Fixed(integers=([4, 0], [4, 0])))
    assert (out[0, :, 2:6, 2:6] == 0).all() and out[0].sum() == 3 * (64 - 16)
    # centred on the corner, the square overhangs: a 2 x 2 corner is cut
    assert (out[1, :, :2, :2] == 0).all() and out[1].sum() == 3 * (64 - 4)


def test_color_is_brightness_then_saturation_then_contrast():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    b, s, c = [0.25, -0.5], [1.5, 0.0], [0.5, 1.25]
    out = augment.color(x, Fixed(uniforms=(b, s, c)))
    for i in range(2):
        y = x[i] + b[i]
        y = (y - y.mean(0)) * s[i] + y.mean(0)
        y = (y - y.mean()) * c[i] + y.mean()
        torch.testing.assert_close(out[i], y)
    gray = torch.rand(1, 1, 4, 4, generator=gen)
    # one channel: saturation leaves it as it is
    torch.testing.assert_close(augment.color(gray, Fixed(uniforms=([0.0], [1.9], [1.0]))), gray)


def test_policies_are_differentiable_and_seeded():
    x = torch.rand(4, 1, 16, 16, requires_grad=True)
    first = augment.Augment(ALL, 0, torch.device("cpu"), 4)
    out = first(x)
    out.square().sum().backward()
    assert out.shape == x.shape and x.grad is not None and x.grad.abs().sum() > 0
    again = augment.Augment(ALL, 0, torch.device("cpu"), 4)(x.detach())
    other = augment.Augment(ALL, 1, torch.device("cpu"), 4)(x.detach())
    assert torch.equal(out.detach(), again) and not torch.equal(again, other)


def test_a_rank_draws_the_whole_batch_and_keeps_its_rows():
    x = torch.rand(8, 1, 16, 16)
    whole = augment.Augment(ALL, 5, torch.device("cpu"), 8)(x)
    halves = [augment.Augment(ALL, 5, torch.device("cpu"), 8, slice(a, a + 4))(x[a:a + 4])
              for a in (0, 4)]
    torch.testing.assert_close(torch.cat(halves), whole)


@pytest.mark.parametrize("value, says", [
    (["color", "flip"], "train.augment: got 'flip', allowed: color, translation, cutout"),
    (["cutout", "cutout"], "train.augment: 'cutout' is listed twice"),
])
def test_bad_policies_are_refused_in_one_line(value, says):
    with pytest.raises(ConfigError, match=says):
        check_run(MODEL, train_cfg(augment=tuple(value)))


def test_augment_must_be_a_list():
    base = {"loss": "hinge", "optimizer": "adam", "lr": 1e-3, "batch_size": 8, "steps": 1,
            "log_every": 1}
    with pytest.raises(ConfigError, match=r"train.augment: got 'color', expected a list of "
                                          r"strings or null"):
        from_params(TrainConfig, {**base, "augment": "color"}, "train")
    assert from_params(TrainConfig, {**base, "augment": ["color"]}, "train").augment == \
        ("color",)


def test_off_is_not_recorded_so_runs_without_it_keep_their_bytes():
    assert "augment" not in to_record(train_cfg(augment=None))
    assert "augment" not in to_record(train_cfg(augment=()))
    assert to_record(train_cfg())["augment"] == list(ALL)
    off = train.train(MODEL, train_cfg(augment=None), 3, tiny_split(), progress=False)
    empty = train.train(MODEL, train_cfg(augment=()), 3, tiny_split(), progress=False)
    assert "augment" not in off.checkpoint["config"]["train"]
    for key, value in off.checkpoint["generator"].items():
        assert torch.equal(value, empty.checkpoint["generator"][key]), key


def test_augmented_runs_repeat_bit_for_bit_and_differ_from_plain_ones():
    a = train.train(MODEL, train_cfg(), 3, tiny_split(), progress=False).checkpoint
    b = train.train(MODEL, train_cfg(), 3, tiny_split(), progress=False).checkpoint
    plain = train.train(MODEL, train_cfg(augment=None), 3, tiny_split(),
                        progress=False).checkpoint
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key
    assert any(not torch.equal(a["generator"][k], plain["generator"][k])
               for k in a["generator"])


@pytest.mark.parametrize("loss", ["non_saturating", "wgan_gp"])
def test_augmented_run_resumes_to_the_same_bits(tmp_path, loss):
    cfg = train_cfg(loss=loss, **({"r1_weight": 1.0} if loss != "wgan_gp" else {}))
    model = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4,
                        d_norm="layer" if loss == "wgan_gp" else "batch")
    whole = train.train(model, cfg, 2, tiny_split(), progress=False,
                        resume=Resume(path=tmp_path / "state.pt", every=3))
    # The file holds step 3; the next call resumes there and runs steps 4 to 6 again.
    resumed = train.train(model, cfg, 2, tiny_split(), progress=False,
                          say=lambda _: None, resume=Resume(path=tmp_path / "state.pt", every=3))
    assert resumed.resumed_from == 3
    for name in ("generator", "discriminator"):
        for key, value in whole.checkpoint[name].items():
            assert torch.equal(value, resumed.checkpoint[name][key]), (name, key)
