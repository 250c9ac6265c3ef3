import math

import pytest
import torch

from whywarmup.losses import accuracy, cross_entropy_loss, mse_loss
from whywarmup.schedules import WarmupSchedule, decayed_lr, steps_to_target


def test_linear_warmup_values():
    s = WarmupSchedule(eta_trgt=0.8, warmup_steps=4, total_steps=10)
    assert [s.lr(t) for t in range(1, 7)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert steps_to_target(s, 10) == 4


def test_no_warmup_is_target_from_first_update():
    s = WarmupSchedule(eta_trgt=0.3, warmup_steps=1, total_steps=5)
    assert s.lr(1) == 0.3
    assert steps_to_target(s, 5) == 1


def test_power_warmup_and_eta_init():
    s = WarmupSchedule(eta_trgt=1.0, warmup_steps=10, eta_init=0.2, exponent=2.0, total_steps=10)
    assert s.lr(5) == pytest.approx(0.2 + 0.8 * 0.25)


def test_cosine_decay_to_a_tenth():
    s = WarmupSchedule(eta_trgt=1.0, warmup_steps=10, decay="cosine", total_steps=110)
    assert s.lr(10) == pytest.approx(1.0)
    assert s.lr(60) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: cos(pi/2) = 0
    assert s.lr(110) == pytest.approx(0.1)
    assert decayed_lr(2.0, 50, 10, 110, "constant") == 2.0


def test_mse_is_half_mean_over_batch_and_classes():
    out = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 0.0]])
    y = torch.tensor([1, 0])
    # residuals: [1, 1, 0], [-0.5, 0, 0] -> squares sum 2.25 over 6 entries
    assert mse_loss(out, y).item() == pytest.approx(0.5 * 2.25 / 6)


def test_cross_entropy_is_mean_softmax_ce():
    out = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    expected = 0.5 * ((math.log(math.exp(2) + 1) - 2) + math.log(2))
    assert cross_entropy_loss(out, y).item() == pytest.approx(expected)
    assert accuracy(out, y).item() == pytest.approx(0.5)  # argmax of a tie is class 0
