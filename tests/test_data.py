import pytest
import torch

from whywarmup.data import build_dataset, load_prepared, save_prepared
from whywarmup.errors import DataError
from whywarmup.sections import DataConfig


def test_digits_standardized_split_and_subset():
    data = build_dataset(DataConfig(num_examples=500, split_seed=3))
    assert data.x_train.shape == (450, 1, 8, 8)  # 500 drawn, 10% of them held out for validation
    assert data.x_val.shape == (50, 1, 8, 8)
    assert data.x_test.shape == (359, 1, 8, 8)  # 20% of 1797
    assert data.x_train.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert data.x_train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    again = build_dataset(DataConfig(num_examples=500, split_seed=3))
    assert torch.equal(data.x_train, again.x_train) and torch.equal(data.y_test, again.y_test)
    assert torch.equal(data.x_val, again.x_val)
    other = build_dataset(DataConfig(num_examples=500, split_seed=4))
    assert not torch.equal(data.y_train, other.y_train)


def test_prepared_round_trip_and_checksum(tmp_path):
    data = build_dataset(DataConfig())
    path = tmp_path / "digits.pt"
    meta = save_prepared(data, path)
    assert meta["train"] == [1294, 1, 8, 8] and meta["validation"] == [144, 1, 8, 8]  # 1438 = 1294 + 144
    back = load_prepared(path)
    assert torch.equal(back.x_train, data.x_train) and back.num_classes == 10
    assert torch.equal(back.x_val, data.x_val) and torch.equal(back.y_val, data.y_val)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum"):
        load_prepared(path)
    with pytest.raises(DataError, match="missing"):
        load_prepared(tmp_path / "nothing.pt")


def test_torchvision_dataset_offline_names_the_folder(tmp_path):
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "raw"), download=False))
    assert str(tmp_path / "raw") in str(e.value)


def test_validation_examples_are_never_training_examples():
    from sklearn.datasets import load_digits

    data = build_dataset(DataConfig())
    raw, _ = load_digits(return_X_y=True)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == len(raw)
    rows = {tuple(r) for r in data.x_train.flatten(1).numpy().round(4).tolist()}
    val = [tuple(r) for r in data.x_val.flatten(1).numpy().round(4).tolist()]
    duplicates_in_raw = len(raw) - len({tuple(r) for r in raw.tolist()})
    assert sum(v in rows for v in val) <= duplicates_in_raw  # only images that occur twice in digits itself
