import math

import pytest
import torch
from torch.testing import assert_close

from gan import losses
from gan.errors import ConfigError

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sp(x: float) -> float:  # softplus, by hand
    return math.log1p(math.exp(x))


def test_bce_d_by_hand():
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    expected = (sp(-2.0) + sp(1.0)) / 2 + (sp(0.5) + sp(-3.0)) / 2
    assert_close(losses.bce_d(REAL, FAKE), torch.tensor(expected))


def test_bce_d_matches_torch_bce():
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(REAL, torch.ones(2)) + bce(FAKE, torch.zeros(2))
    assert_close(losses.bce_d(REAL, FAKE), expected)


def test_generator_losses_by_hand():
    assert_close(losses.minimax_g(FAKE), torch.tensor(-(sp(0.5) + sp(-3.0)) / 2))
    assert_close(losses.non_saturating_g(FAKE), torch.tensor((sp(-0.5) + sp(3.0)) / 2))
    assert_close(losses.negated_g(FAKE), torch.tensor(1.25))


def test_minimax_is_log_one_minus_d():
    d = torch.sigmoid(FAKE)
    assert_close(losses.minimax_g(FAKE), torch.log(1 - d).mean())


def test_lsgan_by_hand():
    expected_d = 0.5 * ((1.0 + 4.0) / 2) + 0.5 * ((0.25 + 9.0) / 2)
    assert_close(losses.lsgan_d(REAL, FAKE), torch.tensor(expected_d))
    assert_close(losses.lsgan_g(FAKE), torch.tensor(0.5 * (0.25 + 16.0) / 2))


def test_hinge_by_hand():
    # relu(1 - r): [0, 2]; relu(1 + f): [1.5, 0]
    assert_close(losses.hinge_d(REAL, FAKE), torch.tensor(1.0 + 0.75))


def test_d_losses_fall_as_d_separates_better():
    for name, loss in losses.LOSSES.items():
        worse = loss.d(torch.tensor([0.0]), torch.tensor([0.8]))
        better = loss.d(torch.tensor([0.9]), torch.tensor([0.1]))
        assert better < worse, name


def test_unknown_loss_lists_choices():
    with pytest.raises(ConfigError, match="allowed: minimax, non_saturating, lsgan, hinge"):
        losses.get("wgan")


def test_wasserstein_by_hand():
    # critic: mean D(fake) - mean D(real) = -1.25 - 0.5; G: -mean D(fake) = 1.25
    loss = losses.get("wgan_gp")
    assert_close(loss.d(REAL, FAKE), torch.tensor(-1.75))
    assert_close(loss.g(FAKE), torch.tensor(1.25))
    assert loss.gradient_penalty and not loss.probabilistic


def test_one_sided_label_smoothing_by_hand():
    # target t on real: -(t log s(r) + (1 - t) log(1 - s(r))) = t sp(-r) + (1 - t) sp(r)
    real_term = (0.9 * sp(-2.0) + 0.1 * sp(2.0) + 0.9 * sp(1.0) + 0.1 * sp(-1.0)) / 2
    expected = real_term + (sp(0.5) + sp(-3.0)) / 2
    assert_close(losses.bce_d(REAL, FAKE, real_target=0.9), torch.tensor(expected))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch_bce = bce(REAL, torch.full((2,), 0.9)) + bce(FAKE, torch.zeros(2))
    assert_close(losses.bce_d(REAL, FAKE, real_target=0.9), torch_bce)


def test_only_cross_entropy_losses_take_a_smoothed_target():
    smoothable = {name for name, loss in losses.LOSSES.items() if loss.label_smoothing}
    assert smoothable == {"minimax", "non_saturating"}
    for name in set(losses.LOSSES) - smoothable:
        loss = losses.get(name)
        loss.d(REAL, FAKE, real_target=1.0)
        with pytest.raises(ValueError, match="real_target must be 1.0"):
            loss.d(REAL, FAKE, real_target=0.9)


class TinyCritic(torch.nn.Module):
    """A smooth, nonlinear critic of (B, 1, 2, 2) images, labels shifting its output."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(4, 3, generator=gen, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64))

    def forward(self, x, labels=None):
        scale = 1.0 if labels is None else 1.0 + labels.to(x.dtype)
        return torch.tanh(x.flatten(1) @ self.w1) @ self.w2 * scale


def finite_difference_norms(critic, x, labels, eps=1e-6):
    """||grad_x critic(x_i)||_2 per sample by central differences."""
    flat = x.flatten(1)
    grads = torch.zeros_like(flat)
    for j in range(flat.shape[1]):
        step = torch.zeros_like(flat)
        step[:, j] = eps
        up = critic((flat + step).view_as(x), labels)
        down = critic((flat - step).view_as(x), labels)
        grads[:, j] = (up - down) / (2 * eps)
    return grads.norm(dim=1)


@pytest.mark.parametrize("with_labels", [False, True])
def test_gradient_penalty_matches_finite_differences(with_labels):
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(3, 1, 2, 2, generator=gen, dtype=torch.float64)
    fake = torch.randn(3, 1, 2, 2, generator=gen, dtype=torch.float64)
    alpha = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2]) if with_labels else None
    critic = TinyCritic()
    mixed = alpha.view(3, 1, 1, 1) * real + (1 - alpha.view(3, 1, 1, 1)) * fake
    with torch.no_grad():
        norms = finite_difference_norms(critic, mixed, labels)
    penalty = losses.gradient_penalty(critic, real, fake, labels, alpha=alpha)
    assert_close(penalty, ((norms - 1) ** 2).mean())
    # create_graph: the penalty is differentiable in D's weights, so it trains D
    penalty.backward()
    assert critic.w1.grad is not None and critic.w1.grad.abs().sum() > 0


def test_gradient_penalty_draws_alpha_and_leaves_g_alone():
    critic = TinyCritic()
    real = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    fake = torch.randn(5, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    penalty = losses.gradient_penalty(critic, real, fake)
    assert penalty.ndim == 0 and torch.isfinite(penalty)
    penalty.backward()
    assert fake.grad is None  # fakes are detached: the penalty never moves G


class LinearCritic(torch.nn.Module):
    """D(x, y) = <w_y, x> + b: its gradient in x is w_y, whatever x."""

    def __init__(self, classes: int = 1):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(classes, 4, generator=gen, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, x, labels=None):
        w = self.w[labels] if labels is not None else self.w[0].expand(x.shape[0], -1)
        return (x.flatten(1) * w).sum(dim=1) + self.b


@pytest.mark.parametrize("with_labels", [False, True])
def test_r1_penalty_by_hand_for_a_linear_critic(with_labels):
    critic = LinearCritic(classes=3)
    real = torch.randn(4, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 2, 1]) if with_labels else None
    rows = critic.w.detach()[labels] if with_labels else critic.w.detach()[[0, 0, 0, 0]]
    expected = (rows**2).sum(dim=1).mean()  # mean over the batch of ||w_y||^2
    penalty = losses.r1_penalty(critic, real, labels)
    assert_close(penalty, expected)
    # create_graph: it trains D, d/dw_y of mean ||w_y||^2 = 2 w_y * (share of the batch)
    penalty.backward()
    counts = torch.bincount(labels, minlength=3) if with_labels else torch.tensor([4, 0, 0])
    assert_close(critic.w.grad, 2 * critic.w.detach() * counts[:, None] / 4)
    assert real.grad is None  # the images are detached: nothing flows back to them


def test_r1_penalty_matches_finite_differences():
    critic = TinyCritic()
    real = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(2),
                       dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        norms = finite_difference_norms(critic, real, labels)
    assert_close(losses.r1_penalty(critic, real, labels), (norms**2).mean())


def test_mode_seeking_by_hand():
    # Pairs (row 0, row 2) and (row 1, row 3); the odd row 4 is left out.
    images = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0], [1.0, -1.0], [9.0, 9.0]])
    z = torch.tensor([[0.0], [0.0], [2.0], [1.0], [5.0]])
    image_gap = (0.5 + 1.0 + 0.0 + 2.0) / 4
    latent_gap = (2.0 + 1.0) / 2
    expected = 1.0 / (image_gap / latent_gap + 1e-5)
    assert_close(losses.mode_seeking(images, z), torch.tensor(expected))


def test_mode_seeking_falls_as_paired_images_move_apart():
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    images = torch.randn(8, 1, 3, 3, generator=torch.Generator().manual_seed(1)) * 0.1
    images.requires_grad_(True)
    before = losses.mode_seeking(images, z)
    before.backward()
    with torch.no_grad():  # one step of gradient descent, as G takes
        moved = images - 0.01 * images.grad
    after = losses.mode_seeking(moved, z)
    assert after < before
    first, second = moved[:4] - moved[4:], images[:4] - images[4:]
    assert first.abs().mean() > second.abs().mean()  # the pairs drifted apart


def test_mode_seeking_needs_a_pair():
    with pytest.raises(ValueError, match="at least 2 images"):
        losses.mode_seeking(torch.zeros(1, 4), torch.zeros(1, 2))
