"""Readers for the real datasets' on-disk formats (the files torchvision downloads), with clear errors.

Layout under `data.root`, as torchvision writes it:
- CIFAR-10: cifar-10-python.tar.gz -> cifar-10-batches-py/{data_batch_1..5, test_batch} (pickled dicts)
- CIFAR-100: cifar-100-python.tar.gz -> cifar-100-python/{train, test}
- MNIST / Fashion-MNIST: MNIST/raw/*-idx?-ubyte(.gz), FashionMNIST/raw/*-idx?-ubyte(.gz) (IDX files)

torchvision does the downloading (it checks each archive's md5); the reading is ours so that the files are
unpickled with a loader that only admits numpy arrays (no code runs from a downloaded pickle), a truncated or
corrupted file is named with the way to rebuild it, and an archive already in the folder is used offline.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import atomic_write_bytes

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]


@dataclass(frozen=True)
class CifarLayout:
    torchvision_name: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    meta_file: str  # class names; extracted for torchvision's sake, not read here


@dataclass(frozen=True)
class IdxLayout:
    torchvision_name: str  # also the folder: <root>/<name>/raw
    files: tuple[str, str, str, str] = (  # train images, train labels, test images, test labels
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    num_classes: int = 10


CIFAR10 = CifarLayout(
    "CIFAR10",
    "cifar-10-python.tar.gz",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "labels",
    10,
    "batches.meta",
)
CIFAR100 = CifarLayout(
    "CIFAR100", "cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",), "fine_labels", 100, "meta"
)
LAYOUTS: dict[str, CifarLayout | IdxLayout] = {
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "mnist": IdxLayout("MNIST"),
    "fashion_mnist": IdxLayout("FashionMNIST"),
}


def expected_files(dataset: str, root: Path) -> tuple[Path, list[Path], list[Path]]:
    """(folder, the files read from it, the archives they can be extracted from) of a dataset under `root`."""
    layout = LAYOUTS[dataset]
    if isinstance(layout, CifarLayout):
        folder = root / layout.folder
        return folder, [folder / f for f in layout.train_files + layout.test_files], [root / layout.archive]
    folder = root / layout.torchvision_name / "raw"
    return folder, [folder / f for f in layout.files], [folder / f"{f}.gz" for f in layout.files]


# bytes torchvision downloads for each dataset (its archives, as served in 2026)
DOWNLOAD_BYTES = {
    "cifar10": 170_498_071,
    "cifar100": 169_001_437,
    "mnist": 9_912_422 + 28_881 + 1_648_877 + 4_542,
    "fashion_mnist": 26_421_880 + 29_515 + 4_422_102 + 5_148,
}


def download_note(dataset: str, root: Path, download: bool) -> tuple[str, bool]:
    """("", False) when the dataset's files (or archives) are in `root`; otherwise what the prepare stage will do
    in words and whether that is an error (it cannot get the files)."""
    if dataset not in LAYOUTS:
        return "", False
    folder, files, archives = expected_files(dataset, root)
    if all(f.exists() for f in files) or all(a.exists() for a in archives):
        return "", False
    size = f"{DOWNLOAD_BYTES[dataset] / 1e6:.0f} MB"
    if not download:
        return (
            f"the {dataset} files are not in {folder} and data.download is false, so the prepare stage will stop: "
            f"put the files or the archive(s) {', '.join(a.name for a in archives)} there, or set data.download: "
            f"true (it downloads {size})",
            True,
        )
    return (
        f"the {dataset} files are not in {folder} yet: the prepare stage will download {size} with torchvision "
        "(offline it stops and says where to put the files)",
        False,
    )


def _rebuild_hint(dataset: str, root: Path) -> str:
    folder, _, archives = expected_files(dataset, root)
    return (
        f"Delete {folder} and the archive(s) {', '.join(a.name for a in archives)} beside it and re-run with "
        f"data.download: true, or copy complete files from a machine where `torchvision.datasets."
        f"{LAYOUTS[dataset].torchvision_name}('{root}', download=True)` has run."
    )


def _corrupt(path: Path, dataset: str, root: Path, why: str) -> DataError:
    return DataError(f"{path} is truncated or corrupted ({why}). {_rebuild_hint(dataset, root)}")


def _extract(dataset: str, root: Path) -> None:
    """Unpack the archive(s) in the folder: the expected regular files only (no path from an archive is trusted),
    each written atomically."""
    layout = LAYOUTS[dataset]
    _, files, archives = expected_files(dataset, root)
    todo = [(archives[0], None)] if isinstance(layout, CifarLayout) else [(a, f) for f, a in zip(files, archives)]
    for archive, file in todo:
        if file is not None and file.exists():
            continue
        try:
            if file is not None:
                atomic_write_bytes(file, gzip.decompress(archive.read_bytes()))
                continue
            wanted = {f"{layout.folder}/{f.name}": f for f in files}
            meta = {f"{layout.folder}/{layout.meta_file}": files[0].with_name(layout.meta_file)}
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    name = member.name.removeprefix("./")
                    if member.isfile() and (name in wanted or name in meta):
                        atomic_write_bytes(wanted.pop(name, None) or meta[name], tar.extractfile(member).read())
            if wanted:
                raise tarfile.ReadError(f"{', '.join(sorted(wanted))} not in the archive")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
            raise _corrupt(archive, dataset, root, f"{type(e).__name__}: {e}") from None


def _download(dataset: str, root: Path) -> None:
    """Fetch the archive(s) with torchvision (which checks their md5); extraction is _extract's."""
    import torchvision
    from torchvision.datasets.utils import download_url

    cls = getattr(torchvision.datasets, LAYOUTS[dataset].torchvision_name)
    folder, files, archives = expected_files(dataset, root)
    try:
        if isinstance(LAYOUTS[dataset], CifarLayout):
            download_url(cls.url, str(root), cls.filename, cls.tgz_md5)
        else:
            for (name, md5), file in zip(cls.resources, files):
                if file.exists():
                    continue
                errors = []
                for mirror in cls.mirrors:
                    try:
                        download_url(mirror + name, str(folder), name, md5)
                        break
                    except Exception as e:  # noqa: BLE001 - the next mirror may work
                        errors.append(e)
                else:
                    raise errors[-1]
    except Exception as e:  # noqa: BLE001 - urllib, http.client, torchvision: any failure means "not downloaded"
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise DataError(
            f"Could not download {dataset} into {root} ({why}). Without network access, put its files into "
            f"{folder} ({', '.join(f.name for f in files)}) or the archive(s) {', '.join(a.name for a in archives)} "
            f"into {archives[0].parent}, e.g. copied from a machine where `torchvision.datasets.{cls.__name__}"
            f"('{root}', download=True)` has run; then re-run."
        ) from None


def ensure_files(dataset: str, root: Path, download: bool) -> list[Path]:
    """The dataset's files, extracted from archives in the folder, downloaded first when missing."""
    folder, files, archives = expected_files(dataset, root)
    if all(f.exists() for f in files):
        return files
    if isinstance(LAYOUTS[dataset], CifarLayout):
        have_archives = archives[0].exists()
    else:
        have_archives = all(a.exists() for f, a in zip(files, archives) if not f.exists())
    if not have_archives and not download:
        missing = [f.name for f in files if not f.exists()]
        raise DataError(
            f"The {dataset} files are not in {folder} (missing: {', '.join(missing)}) and data.download is false. "
            f"Put them there, or the archive(s) {', '.join(a.name for a in archives)} into {archives[0].parent}, "
            f"or set data.download: true in params.yaml on a machine with network access."
        )
    if not have_archives:
        _download(dataset, root)
    _extract(dataset, root)
    return files


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings: a downloaded pickle cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, layout: CifarLayout, dataset: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            entry = _ArraysOnly(f, encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[layout.label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise _corrupt(path, dataset, root, f"{type(e).__name__}: {e}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise _corrupt(path, dataset, root, f"data {data.shape} and {len(labels)} labels, expected (N, 3072) and N")
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise _corrupt(path, dataset, root, f"labels outside 0..{layout.num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels  # rows are R, G, B planes of 32 x 32, row-major


def _read_idx(path: Path, dims: int, dataset: str, root: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x0000080<dims>, big-endian sizes, then the values)."""
    raw = path.read_bytes()
    header = 4 + 4 * dims
    if len(raw) < header or raw[:4] != bytes([0, 0, 8, dims]):
        raise _corrupt(path, dataset, root, f"not an IDX file of {dims}-d unsigned bytes")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(raw) != header + int(np.prod(shape)):
        raise _corrupt(path, dataset, root, f"{len(raw) - header} values for a {shape} array")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_arrays(dataset: str, root: Path, download: bool) -> Arrays:
    """(x_train, y_train, x_test, y_test, num_classes): x float32 (N, C, H, W) in 0..255, y int64."""
    layout = LAYOUTS[dataset]
    files = ensure_files(dataset, root, download)
    if isinstance(layout, CifarLayout):
        parts = [_read_cifar_batch(f, layout, dataset, root) for f in files]
        n_train = len(layout.train_files)
        x_tr, y_tr = (np.concatenate(a) for a in zip(*parts[:n_train]))
        x_te, y_te = (np.concatenate(a) for a in zip(*parts[n_train:]))
    else:
        x_tr, y_tr, x_te, y_te = (_read_idx(f, 3 if i % 2 == 0 else 1, dataset, root) for i, f in enumerate(files))
        for images, labels, name in ((x_tr, y_tr, files[1]), (x_te, y_te, files[3])):
            if len(images) != len(labels):
                raise _corrupt(name, dataset, root, f"{len(labels)} labels for {len(images)} images")
        x_tr, x_te = x_tr[:, None], x_te[:, None]
    return (
        x_tr.astype(np.float32),
        y_tr.astype(np.int64),
        x_te.astype(np.float32),
        y_te.astype(np.int64),
        layout.num_classes,
    )
