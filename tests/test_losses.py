import math

import pytest
import torch
from torch.testing import assert_close

from gan import losses
from gan.config import ConfigError

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
