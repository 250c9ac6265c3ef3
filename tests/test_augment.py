import torch
from torchvision.transforms.v2 import functional as TF

from tests.conftest import tiny_run
from whywarmup.augment import flip_crop
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
