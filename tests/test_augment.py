import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from tests.conftest import tiny_run
from whywarmup.augment import flip_crop, mixup
from whywarmup.losses import accuracy, cross_entropy_loss, mse_loss
from whywarmup.train import _batches, train_run


def test_flip_crop_matches_torchvision_per_image():
    """The batched flip + padded crop equals torchvision's hflip / pad / crop applied image by image with the
    same random draws (flips, row offsets, column offsets)."""
    x = torch.randn(16, 3, 10, 12)
    out = flip_crop(x, torch.Generator().manual_seed(5), pad=4)
    g = torch.Generator().manual_seed(5)
    flip, dy, dx = (
        torch.rand(16, generator=g) < 0.5,
        torch.randint(0, 9, (16,), generator=g),
        torch.randint(0, 9, (16,), generator=g),
    )
    assert 0 < flip.sum() < 16 and len(set(dy.tolist())) > 1  # the draws exercise both branches and several shifts
    for i in range(16):
        img = TF.hflip(x[i]) if flip[i] else x[i]
        ref = TF.crop(TF.pad(img, [4]), int(dy[i]), int(dx[i]), 10, 12)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=0)


def test_training_with_augmentation_is_repeatable_and_sees_new_images(digits):
    method = {"kind": "none", "eta_trgt": 0.05, "optimizer": {"name": "sgd", "momentum": 0.9}}
    sections = {"sharpness": {"every": 0, "subset_size": 64, "critical_lr": {"enabled": False}}}
    plain = tiny_run(method, steps=12, training={"steps": 12, "batch_size": 32, "eval_every": 12}, **sections)
    aug = tiny_run(
        method, steps=12, training={"steps": 12, "batch_size": 32, "eval_every": 12, "augment": "flip_crop"}, **sections
    )
    assert aug.key != plain.key
    first_plain, first_aug = next(_batches(digits, plain)), next(_batches(digits, aug))
    torch.testing.assert_close(first_aug[1], first_plain[1])  # same examples in the same order ...
    assert not torch.equal(first_aug[0], first_plain[0])  # ... seen flipped and shifted
    a, b, c = (
        train_run(aug, digits, progress=False),
        train_run(aug, digits, progress=False),
        train_run(plain, digits, progress=False),
    )
    assert a.trajectory["loss"].tolist() == b.trajectory["loss"].tolist()
    assert a.trajectory["loss"].tolist()[1:] != c.trajectory["loss"].tolist()[1:]


def test_mixup_matches_a_hand_computation_of_one_batch():
    """x = lam x + (1 - lam) x[perm] and soft targets likewise, with lam and perm drawn from the same numpy
    generator; both losses take the soft targets exactly as written out by hand."""
    x = torch.arange(12, dtype=torch.float32).view(4, 3)
    y = torch.tensor([0, 2, 1, 2])
    mixed, soft = mixup(x, y, 3, 0.4, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    lam, perm = rng.beta(0.4, 0.4), rng.permutation(4)
    assert 0 < lam < 1 and list(perm) != [0, 1, 2, 3]  # a real mix
    for i in range(4):
        expected_x = [lam * x[i, k].item() + (1 - lam) * x[perm[i], k].item() for k in range(3)]
        expected_t = [lam * (y[i].item() == k) + (1 - lam) * (y[perm[i]].item() == k) for k in range(3)]
        assert mixed[i].tolist() == pytest.approx(expected_x, rel=1e-6)
        assert soft[i].tolist() == pytest.approx(expected_t, rel=1e-6)
    out = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, 0.1], [1.0, 1.0, -2.0], [0.2, 0.2, 0.2]])
    by_hand_mse = 0.5 * sum((out[i, k].item() - soft[i, k].item()) ** 2 for i in range(4) for k in range(3)) / 12
    log_p = torch.log_softmax(out, dim=1)
    by_hand_ce = -sum(soft[i, k].item() * log_p[i, k].item() for i in range(4) for k in range(3)) / 4
    assert mse_loss(out, soft).item() == pytest.approx(by_hand_mse, rel=1e-6)
    assert cross_entropy_loss(out, soft).item() == pytest.approx(by_hand_ce, rel=1e-6)
    # with one-hot soft targets both losses equal their class-index form
    hard = torch.nn.functional.one_hot(y, 3).float()
    assert mse_loss(out, hard).item() == pytest.approx(mse_loss(out, y).item())
    assert cross_entropy_loss(out, hard).item() == pytest.approx(cross_entropy_loss(out, y).item())
    assert accuracy(out, soft).item() == pytest.approx(accuracy(out, soft.argmax(1)).item())


def test_training_with_mixup_is_repeatable_and_mixes(digits):
    method = {"kind": "none", "eta_trgt": 0.05}
    sections = {"sharpness": {"every": 0, "subset_size": 64, "critical_lr": {"enabled": False}}}
    training = {"steps": 8, "batch_size": 32, "eval_every": 8}
    mixed = tiny_run(method, steps=8, training={**training, "mixup_alpha": 0.2}, **sections)
    plain = tiny_run(method, steps=8, training=training, **sections)
    (xm, ym), (xp, _) = next(_batches(digits, mixed)), next(_batches(digits, plain))
    assert ym.shape == (32, digits.num_classes) and torch.allclose(ym.sum(1), torch.ones(32))
    assert not torch.equal(xm, xp)
    a, b = train_run(mixed, digits, progress=False), train_run(mixed, digits, progress=False)
    assert a.trajectory["loss"].tolist() == b.trajectory["loss"].tolist()
    assert a.status != "diverged" and a.trajectory["loss"].notna().all()
