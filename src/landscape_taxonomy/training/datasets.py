"""Datasets as arrays: the built-in ones (digits, MNIST-1D, torchvision's) and a researcher's
loader by import path, each as (x_train, y_train, x_test, y_test, classes, pixel scale).
prepare (data.py) standardizes and stores them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import DataError

# torch is imported where tensors are made: a stage that only reads the manifest (keys,
# sizes) or a DataError (the store, the executor) starts without it (3 s on 2 cores).

TORCHVISION = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "svhn": "SVHN",
}


def pixel_stats(x_train: np.ndarray):
    """Per-channel mean/std [1, C, 1, 1] of the training images (float32, in [0, 1])."""
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    return mean, std


def standardized(raw: np.ndarray, scale: float, mean, std) -> np.ndarray:
    """Pixels as stored -> the float32 network input, (raw / scale - mean) / std. numpy
    here and when loading: torch may divide by a scalar's reciprocal, another rounding."""
    return (raw.astype(np.float32) / scale - mean) / std


def _digits_arrays():
    """(images [1797, 8, 8], target [1797]) as sklearn.datasets.load_digits gives them, read
    from the file scikit-learn ships: importing sklearn to load it takes 2 s."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if path.is_file():
        rows = np.loadtxt(path, delimiter=",")  # [1797, 65]: 64 pixels, then the label
        return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)
    from sklearn.datasets import load_digits as sk_digits  # a layout this does not know

    d = sk_digits()
    return d.images, d.target


def digits_raw(test_fraction: float, seed: int):
    """scikit-learn's bundled 8x8 digits (1,797 images), split by a seeded permutation, as
    stored: (x_train, y_train, x_test, y_test, n_classes, scale), pixels uint8 in 0..16."""
    images, target = _digits_arrays()
    x = images.astype(np.uint8)[:, None]  # [1797, 1, 8, 8], whole numbers 0..16
    y = target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test], 10, 16.0


def load_digits(test_fraction: float, seed: int):
    """The same split as float32 images in [0, 1]: (x_train, y_train, x_test, y_test, 10)."""
    xtr, ytr, xte, yte, k, scale = digits_raw(test_fraction, seed)
    return standardized(xtr, scale, 0.0, 1.0), ytr, standardized(xte, scale, 0.0, 1.0), yte, k


def mnist1d_raw(train_samples: int, test_samples: int, generator_seed: int, seed: int,
                **transforms):
    """MNIST-1D (Greydanus 2020), generated offline by the `mnist1d` package from its ten
    templates with its default transforms, then split like digits by a permutation seeded
    with the study's `seed`: (x_train, y_train, x_test, y_test, 10, 1.0), signals float32
    [N, 1, 1, 40]. `generator_seed` fixes the pool of signals (the package's default is 42);
    `seed` picks which of them train, so another study seed is another split of one pool.
    `transforms` override the package's (max_translation, corr_noise_scale, ...)."""
    from mnist1d.data import get_dataset_args, make_dataset

    n = train_samples + test_samples
    args = get_dataset_args()
    args.num_samples = -(-n // 10) * 10  # the package makes num_samples // 10 per class
    args.train_split = 1.0
    args.seed = generator_seed
    for k, v in transforms.items():
        setattr(args, k, v)
    pool = make_dataset(args)  # seeds numpy's global generator: nothing of ours uses it
    x = pool["x"].astype(np.float32)[:, None, None, :]  # [N, 1, 1, 40]: one channel, one row
    y = pool["y"].astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))[:n]
    test, train = perm[:test_samples], perm[test_samples:]
    return x[train], y[train], x[test], y[test], 10, 1.0


def _to_arrays(ds):
    """A torchvision dataset -> (x [N, C, H, W] as stored: uint8 for the supported sets,
    y [N] int64)."""
    import torch

    data = ds.data
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    data = np.asarray(data)
    if data.ndim == 3:  # MNIST-like [N, H, W]
        data = data[:, None]
    elif data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):  # CIFAR [N, H, W, C]
        data = data.transpose(0, 3, 1, 2)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels  # SVHN
    return np.ascontiguousarray(data), np.asarray(labels, dtype=np.int64)


def load_torchvision(name: str, root: str, download: bool):
    """Train and test splits of a torchvision dataset as arrays."""
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION[name])
    splits = []
    for train in (True, False):
        kwargs = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
        try:
            ds = cls(root=root, download=False, **kwargs)
        except RuntimeError:
            if not download:
                raise DataError(_missing_message(name, root)) from None
            try:
                ds = cls(root=root, download=True, **kwargs)
            except Exception as e:  # no network, a proxy, a half-downloaded archive
                raise DataError(_download_failed(name, root, e)) from None
        splits.append(_to_arrays(ds))
    (xtr, ytr), (xte, yte) = splits
    n_classes = 100 if name == "cifar100" else 10
    if xtr.dtype != np.uint8 or xte.dtype != np.uint8:  # no such set among ours: kept exact
        return xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, n_classes, 1.0
    return xtr, ytr, xte, yte, n_classes, 255.0


def _download_failed(name: str, root: str, e: Exception) -> str:
    """One line: what was missing, that the download was tried, and why it failed (the
    error's own first line names the file or the address; torchvision's MNIST says which
    archive, urllib the network's reason)."""
    cause = " ".join(str(getattr(e, "reason", None) or e).split())[:200] or "no message"
    return (f"data.dataset={name}: files not found at {_where(name, root)}, and downloading "
            f"them failed ({type(e).__name__}: {cause}); without a network, put the files "
            "there yourself")


def _missing_message(name: str, root: str) -> str:
    return (f"data.dataset={name}: files not found; put them at {_where(name, root)} "
            "or allow data.download")


def _where(name: str, root: str) -> str:
    return {
        "mnist": f"{root}/MNIST/raw/ (train-images-idx3-ubyte etc., as torchvision.datasets.MNIST)",
        "fashion-mnist": f"{root}/FashionMNIST/raw/ (the four idx files)",
        "cifar10": f"{root}/cifar-10-batches-py/ (extracted cifar-10-python.tar.gz)",
        "cifar100": f"{root}/cifar-100-python/ (extracted cifar-100-python.tar.gz)",
        "svhn": f"{root}/train_32x32.mat and {root}/test_32x32.mat",
    }[name]


def load_dataset(name: str, root: str, download: bool, test_fraction: float, seed: int,
                 mnist1d: dict | None = None):
    """(x_train, y_train, x_test, y_test, n_classes, scale) as stored. `mnist1d` holds
    MNIST-1D's train_samples, test_samples and generator seed (config.Mnist1dConfig)."""
    if name == "digits":
        return digits_raw(test_fraction, seed)
    if name == "mnist1d":
        m = dict(mnist1d or {})
        return mnist1d_raw(m.pop("train_samples"), m.pop("test_samples"), m.pop("seed"), seed,
                           **m)
    from . import custom
    if custom.is_path(name):
        return custom_raw(name, seed)
    return load_torchvision(name, root, download)


def custom_raw(path: str, seed: int):
    """A researcher's loader (custom.py): loader(seed) -> (x_train, y_train, x_test, y_test),
    as stored: x [N, C, H, W] ([N, L] is read as signals [N, 1, 1, L], [N, H, W] as one
    channel), labels 0..K-1. uint8 pixels are scaled by 255, other integers by their
    maximum, floats as they are."""
    from . import custom

    out = custom.resolve(path, "data.dataset")(seed)
    if not (isinstance(out, (tuple, list)) and len(out) == 4):
        raise DataError(f"data.dataset: {path} must return (x_train, y_train, x_test, "
                        f"y_test), got {type(out).__name__}")
    xtr, ytr, xte, yte = (np.asarray(a) for a in out)
    shaped = []
    for x in (xtr, xte):
        if x.ndim == 2:
            x = x[:, None, None, :]
        elif x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise DataError(f"data.dataset: {path}: x must be [N, C, H, W], [N, H, W] or "
                            f"[N, L], got shape {list(x.shape)}")
        shaped.append(x)
    xtr, xte = shaped
    for y, x, part in ((ytr, xtr, "train"), (yte, xte, "test")):
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) \
                or y.min() < 0:
            raise DataError(f"data.dataset: {path}: {part} labels must be one non-negative "
                            f"integer per example, got shape {list(y.shape)}, {y.dtype}")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"data.dataset: {path}: train and test shapes differ "
                        f"({list(xtr.shape[1:])} vs {list(xte.shape[1:])})")
    if xtr.dtype == np.uint8:
        scale = 255.0
    elif np.issubdtype(xtr.dtype, np.integer):
        scale = float(max(xtr.max(), 1))
    else:
        xtr, xte, scale = xtr.astype(np.float32), xte.astype(np.float32), 1.0
    k = int(max(ytr.max(), yte.max())) + 1
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), k, scale
