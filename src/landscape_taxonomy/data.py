"""Datasets as tensors, label noise, subsets, and the prepared-data files.

Prepared data lives in one folder (the prepare-noisy-data output):
    train.pt   x [N, C, H, W] pixels as stored (uint8 where the dataset has them), mean and
               std [1, C, 1, 1] float32, y_clean [N] int64, order [N], and the label-noise
               draws noise_u [N] float32, noise_class [N] int64
    test.pt    x [M, C, H, W] pixels as stored, y [M] int64 (always clean)
    manifest.json  sizes, pixel scale, checksums (of the standardized tensors)
Pixels stay in their own type on disk (a quarter of float32's bytes; CIFAR-10's training set
is 154 MB instead of 614 MB) and are standardized when loaded. The noise draws serve every
level (labels_at), so the folder does not depend on the noise levels a grid trains at.
Everything downstream batches by index into these tensors (no DataLoader).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np

from .io import atomic_dir, number_text

# torch is imported where tensors are made: a stage that only reads the manifest (keys,
# sizes) or a DataError (the store, the executor) starts without it (3 s on 2 cores).

TORCHVISION = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "svhn": "SVHN",
}


class DataError(RuntimeError):
    """A dataset that cannot be loaded; str() is the one-line message for the user."""


def tensor_checksum(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _pixel_stats(x_train: np.ndarray):
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
                raise DataError(f"{_missing_message(name, root)} (download failed: "
                                f"{type(e).__name__})") from None
        splits.append(_to_arrays(ds))
    (xtr, ytr), (xte, yte) = splits
    n_classes = 100 if name == "cifar100" else 10
    if xtr.dtype != np.uint8 or xte.dtype != np.uint8:  # no such set among ours: kept exact
        return xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, n_classes, 1.0
    return xtr, ytr, xte, yte, n_classes, 255.0


def _missing_message(name: str, root: str) -> str:
    where = {
        "mnist": f"{root}/MNIST/raw/ (train-images-idx3-ubyte etc., as torchvision.datasets.MNIST)",
        "fashion-mnist": f"{root}/FashionMNIST/raw/ (the four idx files)",
        "cifar10": f"{root}/cifar-10-batches-py/ (extracted cifar-10-python.tar.gz)",
        "cifar100": f"{root}/cifar-100-python/ (extracted cifar-100-python.tar.gz)",
        "svhn": f"{root}/train_32x32.mat and {root}/test_32x32.mat",
    }[name]
    return f"data.dataset={name}: files not found; put them at {where} or allow data.download"


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


def noise_draws(n: int, n_classes: int, seed: int):
    """(u [n] uniform in [0, 1), replacement class [n]): label i is replaced at noise p when
    u_i < p. One set of draws serves every level, so the corrupted sets are nested as noise
    grows and a grid over noise needs no level named in advance."""
    import torch

    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=g)
    repl = torch.randint(0, n_classes, (n,), generator=g)
    return u, repl


def labels_at(y, u, repl, noise: float):
    """y with each label replaced by its drawn class where u < noise."""
    import torch

    return torch.where(u < noise, repl, y)


def noisy_labels(y, noise: float, n_classes: int, seed: int):
    """Replace each label with probability `noise` by a uniformly drawn class.

    The replacement may equal the true class (the paper's definition), so the fraction of
    labels that actually change is about noise * (1 - 1/K).
    """
    return labels_at(y, *noise_draws(len(y), n_classes, seed), noise)


def subset_size(n: int, fraction: float) -> int:
    return max(1, int(math.floor(fraction * n + 1e-9)))


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


PREPARED_FILES = ("train.pt", "test.pt")


def reuse(out_dir: str | Path, stamp: dict) -> dict | None:
    """The manifest of a prepared folder already made from `stamp` (inputs and code) whose
    files are intact, else None. Leaving such a folder as it is (same bytes, same mtimes)
    spares the torch import and lets DVC take its hashes from its state instead of rehashing
    (prepare-noisy-data's output is `persist`, so DVC does not delete it first)."""
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
        if manifest.get("stamp") != stamp:
            return None
        present = sorted(p.name for p in out_dir.iterdir())
        if present != sorted([*PREPARED_FILES, "manifest.json"]):
            return None
        for name in PREPARED_FILES:
            if file_digest(out_dir / name) != manifest["files"][name]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest


def prepare(out_dir: str | Path, *, dataset: str, root: str, download: bool,
            test_fraction: float, seed: int, stamp: dict | None = None,
            mnist1d: dict | None = None) -> dict:
    """Load, draw the label noise, and write the prepared folder. `stamp` (what reuse()
    compares) is recorded in the manifest with each file's sha256."""
    import torch

    xtr, ytr, xte, yte, n_classes, scale = load_dataset(dataset, root, download,
                                                        test_fraction, seed, mnist1d)
    mean, std = _pixel_stats(standardized(xtr, scale, 0.0, 1.0))
    x_train = torch.from_numpy(standardized(xtr, scale, mean, std))  # checksums only
    x_test = torch.from_numpy(standardized(xte, scale, mean, std))
    y_clean, y_test = torch.from_numpy(ytr), torch.from_numpy(yte)
    # A fixed order for nested subsets: a cell with subset f trains on order[:f * N].
    order = torch.randperm(len(y_clean), generator=torch.Generator().manual_seed(seed + 1))
    u, repl = noise_draws(len(y_clean), n_classes, seed)

    manifest = {
        "dataset": dataset,
        "n_classes": n_classes,
        "n_train": len(y_clean),
        "n_test": len(y_test),
        "input_shape": list(x_train.shape[1:]),
        "pixels": {"dtype": str(xtr.dtype), "scale": scale},
        "seed": seed,
        "checksums": {
            "x_train": tensor_checksum(x_train),
            "y_clean": tensor_checksum(y_clean),
            "x_test": tensor_checksum(x_test, y_test),
            "order": tensor_checksum(order),
            "noise_draws": tensor_checksum(y_clean, u, repl),
        },
    }
    stats = {"mean": torch.from_numpy(mean), "std": torch.from_numpy(std), "scale": scale}
    with atomic_dir(out_dir) as tmp:
        torch.save({"x": torch.from_numpy(xtr), **stats, "y_clean": y_clean, "order": order,
                    "noise_u": u, "noise_class": repl}, tmp / "train.pt")
        torch.save({"x": torch.from_numpy(xte), "y": y_test}, tmp / "test.pt")
        if stamp is not None:
            manifest["stamp"] = stamp
            manifest["files"] = {n: file_digest(tmp / n) for n in PREPARED_FILES}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def noise_key(p: float) -> str:
    return number_text(p)  # exact: 0.1000001 and 0.1000002 are two levels


class Prepared:
    """The prepared folder; hands out each cell's training set. The manifest is read at
    once, the tensors on first use: a stage whose cells all come from the store computes
    their keys from the manifest alone and never loads torch."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self.n_classes = self.manifest["n_classes"]
        self.in_channels = self.manifest["input_shape"][0]
        self.n_train = self.manifest["n_train"]
        self._tensors: dict | None = None

    def _load(self) -> dict:
        if self._tensors is None:
            import torch

            train = torch.load(self.folder / "train.pt", weights_only=True)
            test = torch.load(self.folder / "test.pt", weights_only=True)
            pix = (train["scale"], train["mean"].numpy(), train["std"].numpy())

            def x(raw):
                return torch.from_numpy(standardized(raw.numpy(), *pix))
            self._tensors = {"x_train": x(train["x"]), "order": train["order"],
                             "y_clean": train["y_clean"], "noise_u": train["noise_u"],
                             "noise_class": train["noise_class"],
                             "x_test": x(test["x"]), "y_test": test["y"]}
        return self._tensors

    x_train = property(lambda self: self._load()["x_train"])
    order = property(lambda self: self._load()["order"])
    y_clean = property(lambda self: self._load()["y_clean"])
    x_test = property(lambda self: self._load()["x_test"])
    y_test = property(lambda self: self._load()["y_test"])

    def labels(self, noise: float):
        """All N training labels at this noise level."""
        t = self._load()
        return labels_at(t["y_clean"], t["noise_u"], t["noise_class"], noise)

    def train_set(self, noise: float, subset: float):
        """(x [n, C, H, W], y [n]) for a cell: the first subset*N of the fixed order."""
        idx = self.order[: subset_size(len(self.order), subset)]
        return self.x_train[idx], self.labels(noise)[idx]

    def label_noise(self, noise: float, subset: float) -> dict:
        """What the noise did to a cell's training labels: the fractions drawn for
        replacement (~ noise) and actually changed (~ noise * (1 - 1/K))."""
        idx = self.order[: subset_size(len(self.order), subset)]
        u = self._load()["noise_u"][idx]
        changed = self.labels(noise)[idx] != self.y_clean[idx]
        return {"noise": noise, "replaced": float((u < noise).float().mean()),
                "changed": float(changed.float().mean()), "n_changed": int(changed.sum())}

    def checksum(self, noise: float, subset: float) -> str:
        """What a cell's training depends on in the data: images, its labels, its subset."""
        c = self.manifest["checksums"]
        return hashlib.sha256("|".join([
            c["x_train"], c["x_test"], c["order"], c["noise_draws"], noise_key(noise),
            number_text(subset)]).encode()).hexdigest()[:16]
