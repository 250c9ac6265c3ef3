"""The real datasets' readers on small files written here in each dataset's exact on-disk format: the archives
torchvision downloads (CIFAR tar.gz of pickled batches, MNIST/Fashion-MNIST gzipped IDX files), read through the
same path `whywarmup prepare` takes. No network, nothing downloaded."""

import gzip
import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torchvision

from whywarmup.data import build_dataset
from whywarmup.datasets import CIFAR10, CIFAR100, expected_files, load_arrays
from whywarmup.errors import DataError
from whywarmup.sections import DataConfig


def _pattern(n: int, channels: int, side: int, offset: int) -> np.ndarray:
    """Pixel (i, c, h, w) = (offset + 7 i + 5 c + 3 h + w) mod 256: every position distinguishable."""
    i, c, h, w = np.meshgrid(np.arange(n), np.arange(channels), np.arange(side), np.arange(side), indexing="ij")
    return ((offset + 7 * i + 5 * c + 3 * h + w) % 256).astype(np.uint8)


def _py2_style_pickle(obj) -> bytes:
    """Protocol 2, with numpy's pre-2.0 module path, as in the files the CIFAR authors wrote with Python 2."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar(root, layout, per_file: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`<root>/<archive>` holding `<folder>/<batch>` dicts {data: uint8 (N, 3072) R,G,B planes, labels, ...}."""
    written, buf = {}, io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for k, name in enumerate(layout.train_files + layout.test_files):
            images = _pattern(per_file, 3, 32, offset=k)
            labels = (np.arange(per_file) * 3 + k) % layout.num_classes
            entry = {
                "batch_label": name,
                "data": images.reshape(per_file, 3072),
                "filenames": [f"{i}.png" for i in range(per_file)],
            }
            if layout is CIFAR100:
                entry |= {"fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist()}
            else:
                entry["labels"] = labels.tolist()
            payload = _py2_style_pickle(entry)
            info = tarfile.TarInfo(f"{layout.folder}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
            written[name] = (images, labels)
        meta = pickle.dumps({"label_names": [str(i) for i in range(layout.num_classes)]}, protocol=2)
        info = tarfile.TarInfo(f"{layout.folder}/{'meta' if layout is CIFAR100 else 'batches.meta'}")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    (root / layout.archive).write_bytes(buf.getvalue())
    return written


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(root, dataset: str, n_train: int, n_test: int) -> tuple[np.ndarray, ...]:
    """`<root>/<MNIST|FashionMNIST>/raw/*-idx?-ubyte.gz` as downloaded (gzipped IDX, big-endian sizes)."""
    folder, files, archives = expected_files(dataset, root)
    folder.mkdir(parents=True)
    x_tr, x_te = _pattern(n_train, 1, 28, 0)[:, 0], _pattern(n_test, 1, 28, 100)[:, 0]
    y_tr, y_te = np.arange(n_train) % 10, (np.arange(n_test) * 7) % 10
    for archive, array in zip(archives, (x_tr, y_tr, x_te, y_te)):
        archive.write_bytes(gzip.compress(_idx(array)))
    return x_tr, y_tr, x_te, y_te


@pytest.mark.parametrize("layout", [CIFAR10, CIFAR100], ids=["cifar10", "cifar100"])
def test_cifar_archives_are_read_like_torchvision_reads_them(tmp_path, layout):
    dataset = "cifar10" if layout is CIFAR10 else "cifar100"
    written = write_cifar(tmp_path, layout, per_file=6)
    x_tr, y_tr, x_te, y_te, classes = load_arrays(dataset, tmp_path, download=False)
    n_train = 6 * len(layout.train_files)
    assert x_tr.shape == (n_train, 3, 32, 32) and x_te.shape == (6, 3, 32, 32) and classes == layout.num_classes
    i, c, h, w = np.meshgrid(np.arange(6), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    first = layout.train_files[0]
    np.testing.assert_array_equal(x_tr[:6], (7 * i + 5 * c + 3 * h + w) % 256)  # pixel (c, h, w) where it belongs
    np.testing.assert_array_equal(y_tr[:6], written[first][1])
    np.testing.assert_array_equal(y_te, written[layout.test_files[0]][1])

    # Independent answer: torchvision's own CIFAR reader on the same files (its md5 check skipped: our files).
    class Unchecked(getattr(torchvision.datasets, layout.torchvision_name)):
        def _check_integrity(self):
            return True

        def _load_meta(self):  # md5-checked too
            self.classes = []

    reference = Unchecked(str(tmp_path), train=True, download=False)
    np.testing.assert_array_equal(x_tr, reference.data.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(y_tr, reference.targets)


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_idx_files_match_torchvision_and_prepare_standardizes_them(tmp_path, dataset):
    x_tr, y_tr, x_te, y_te = write_idx_dataset(tmp_path, dataset, n_train=20, n_test=8)
    # validation_fraction 0.01 of 20 rounds to no validation example: every training row stays, in order
    cfg = DataConfig(dataset=dataset, root=str(tmp_path), download=False, validation_fraction=0.01)
    data = build_dataset(cfg)  # the path `whywarmup prepare` takes: gunzip, read, standardize
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_test.shape == (8, 1, 28, 28) and len(data.x_val) == 0
    assert data.num_classes == 10 and data.y_train.tolist() == y_tr.tolist() and data.y_test.tolist() == y_te.tolist()
    mean, std = x_tr.astype(np.float64).mean(), x_tr.astype(np.float64).std()
    np.testing.assert_allclose(data.x_train[:, 0].numpy(), (x_tr - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(data.x_test[:, 0].numpy(), (x_te - mean) / std, rtol=1e-6, atol=1e-6)
    # torchvision reads the extracted raw files (MNIST's loader has no md5 check on them)
    reference = getattr(torchvision.datasets, "MNIST" if dataset == "mnist" else "FashionMNIST")(
        str(tmp_path), train=True
    )
    np.testing.assert_array_equal(reference.data.numpy(), x_tr)
    np.testing.assert_array_equal(reference.targets.numpy(), y_tr)


def test_truncated_archives_and_files_name_the_file_and_the_fix(tmp_path):
    write_cifar(tmp_path, CIFAR10, per_file=4)
    archive = tmp_path / CIFAR10.archive
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        load_arrays("cifar10", tmp_path, download=False)
    assert str(archive) in str(e.value) and "truncated or corrupted" in str(e.value) and "Delete" in str(e.value)

    write_cifar(tmp_path, CIFAR10, per_file=4)
    load_arrays("cifar10", tmp_path, download=False)  # extracted
    batch = tmp_path / CIFAR10.folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3 is truncated or corrupted"):
        load_arrays("cifar10", tmp_path, download=False)

    mnist = tmp_path / "m"
    write_idx_dataset(mnist, "mnist", n_train=10, n_test=4)
    gz = mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-30])
    with pytest.raises(DataError) as e:
        load_arrays("mnist", mnist, download=False)
    assert str(gz) in str(e.value) and "truncated" in str(e.value)
    gz.unlink()
    raw = mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw.write_bytes(_idx(np.zeros((4, 28, 28)))[:-1])  # one value short
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte is truncated or corrupted \(3135 values for a \(4, 28, 28\)"
    ):
        load_arrays("mnist", mnist, download=False)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    write_cifar(tmp_path, CIFAR10, per_file=2)
    load_arrays("cifar10", tmp_path, download=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    (tmp_path / CIFAR10.folder / "test_batch").write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        load_arrays("cifar10", tmp_path, download=False)
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "mnist", "fashion_mnist"])
def test_offline_without_files_names_the_folder(tmp_path, dataset):
    """download false: the folder and file names; download true without network (a proxy that refuses every
    connection): the download error, the folder and the archive names."""
    folder, files, archives = expected_files(dataset, tmp_path / "raw")
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(dataset=dataset, root=str(tmp_path / "raw"), download=False))
    assert str(folder) in str(e.value) and files[0].name in str(e.value)
    script = "import sys; from whywarmup.cli import main; sys.exit(main(['prepare', sys.argv[1]]))"
    params = tmp_path / "params.yaml"
    params.write_text(f"data: {{dataset: {dataset}, root: raw}}\nmethods: {{m: {{kind: none}}}}\n")
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    env.pop("https_proxy", None), env.pop("http_proxy", None), env.pop("no_proxy", None)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(params)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "Could not download" in proc.stderr and str(folder) in proc.stderr and archives[0].name in proc.stderr
    assert "Traceback" not in proc.stderr
