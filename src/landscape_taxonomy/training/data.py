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
import json
import math
from pathlib import Path

from ..cells.io import atomic_dir, number_text
from .datasets import load_dataset, pixel_stats, standardized

# torch is imported where tensors are made: a stage that only reads the manifest (keys,
# sizes) or a DataError (the store, the executor) starts without it (3 s on 2 cores).


def tensor_checksum(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


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
    mean, std = pixel_stats(standardized(xtr, scale, 0.0, 1.0))
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
