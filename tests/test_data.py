"""Label noise, subsets, the prepared folder, and torchvision loading without a network."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from landscape_taxonomy.errors import DataError
from landscape_taxonomy.training import data, datasets


def test_realized_noise_rate_within_sampling_error():
    n, k = 20000, 10
    y = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(0))
    for p in (0.1, 0.3, 0.8):
        noisy = data.noisy_labels(y, p, k, seed=1)
        changed = (noisy != y).float().mean().item()
        expect = p * (1 - 1 / k)  # a redrawn label keeps its class with probability 1/k
        assert abs(changed - expect) < 4 * math.sqrt(expect * (1 - expect) / n)


def test_same_seed_same_labels_and_nested_levels():
    y = torch.randint(0, 10, (1000,))
    a = data.noisy_labels(y, 0.3, 10, seed=5)
    assert torch.equal(a, data.noisy_labels(y, 0.3, 10, seed=5))
    assert not torch.equal(a, data.noisy_labels(y, 0.3, 10, seed=6))
    low = data.noisy_labels(y, 0.1, 10, seed=5)
    assert ((low != y) <= (a != y)).all()  # 10% corrupted labels are among the 30%
    assert torch.equal(data.noisy_labels(y, 0.0, 10, seed=5), y)


def test_prepare_writes_manifest_and_keeps_test_labels_clean(tmp_path):
    m = data.prepare(tmp_path / "p", dataset="digits", root="unused", download=False,
                     test_fraction=0.2, seed=0)
    assert m["n_train"] + m["n_test"] == 1797
    prep = data.Prepared(tmp_path / "p")
    _, ytr, _, yte, _ = datasets.load_digits(0.2, 0)
    assert torch.equal(prep.y_test, torch.from_numpy(yte))
    n = m["n_train"]
    # any level, named nowhere in advance: the labels noisy_labels draws for it
    for p in (0.0, 0.5, 0.3):
        x, y = prep.train_set(p, 1.0)
        expect = data.noisy_labels(torch.from_numpy(ytr), p, 10, seed=0)[prep.order]
        assert torch.equal(y, expect)
    info = prep.label_noise(0.5, 1.0)
    assert abs(info["replaced"] - 0.5) < 4 * math.sqrt(0.25 / n)
    assert info["n_changed"] == (prep.train_set(0.5, 1.0)[1] != prep.y_clean[prep.order]).sum()
    assert prep.label_noise(0.0, 1.0)["n_changed"] == 0
    x, _ = prep.train_set(0.5, 1.0)
    xs, ys = prep.train_set(0.5, 0.25)
    assert len(ys) == int(0.25 * n) and torch.equal(xs, x[: len(ys)])
    # two levels, two keys; the same level, the same key
    assert prep.checksum(0.5, 1.0) != prep.checksum(0.3, 1.0) == prep.checksum(0.3, 1.0)
    # standardized with training statistics
    assert abs(prep.x_train.mean().item()) < 1e-4
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["n_classes"] == 10


def test_pixels_kept_in_their_own_type_load_as_float32_standardized_once(tmp_path):
    # On disk the pixels keep the dataset's uint8 (a quarter of float32's bytes); loaded,
    # they are bit for bit what standardizing the float images in [0, 1] gives.
    data.prepare(tmp_path / "p", dataset="digits", root="unused", download=False,
                 test_fraction=0.2, seed=0)
    stored = torch.load(tmp_path / "p" / "train.pt", weights_only=True)
    assert stored["x"].dtype == torch.uint8 and int(stored["x"].max()) == 16
    xtr, _, xte, _, _, _ = datasets.digits_raw(0.2, 0)
    f_tr, f_te = xtr.astype(np.float32) / 16.0, xte.astype(np.float32) / 16.0
    mean = f_tr.mean(axis=(0, 2, 3), keepdims=True)
    std = f_tr.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    prep = data.Prepared(tmp_path / "p")
    assert prep.x_train.dtype == torch.float32
    assert np.array_equal(prep.x_train.numpy(), (f_tr - mean) / std)
    assert np.array_equal(prep.x_test.numpy(), (f_te - mean) / std)
    assert data.Prepared(tmp_path / "p").manifest["checksums"]["x_train"] == \
        data.tensor_checksum(prep.x_train)


def test_digits_read_from_the_file_are_sklearns_own():
    # the loader reads the file scikit-learn ships instead of importing sklearn
    from sklearn.datasets import load_digits

    ref = load_digits()
    images, target = datasets._digits_arrays()
    assert np.array_equal(images, ref.images) and np.array_equal(target, ref.target)


def test_digits_fall_back_to_sklearns_loader_without_the_file(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from sklearn.datasets import load_digits

    monkeypatch.setattr(datasets.importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    images, target = datasets._digits_arrays()
    assert np.array_equal(images, load_digits().images)


def write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for d in array.shape:
            f.write(struct.pack(">I", d))
        f.write(array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_dataset_from_local_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), 2049)
    xtr, ytr, xte, yte, k, scale = datasets.load_dataset(name, str(tmp_path), False, 0.2, 0)
    assert xtr.shape == (30, 1, 28, 28) and xte.shape == (10, 1, 28, 28) and k == 10
    # kept as the files hold them: uint8, scaled by 255 when loaded
    assert xtr.dtype == np.uint8 and scale == 255.0 and ytr.dtype == np.int64


def test_missing_files_without_download_name_the_files(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        datasets.load_dataset("cifar10", str(tmp_path), False, 0.2, 0)



def test_a_failed_download_says_why_not_allow_download(tmp_path, monkeypatch):
    """download is already true: the line names the files, the failure's own cause (here
    torchvision's MNIST message naming the archive) and what to do offline."""
    import torchvision

    class Offline:
        def __init__(self, root, download, **kw):
            if download:
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried "
                                   "https://example.invalid/, got:\n<urlopen error [Errno -3] "
                                   "Temporary failure in name resolution>")
            raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DataError) as e:
        datasets.load_dataset("mnist", str(tmp_path), True, 0.2, 0)
    msg = str(e.value)
    assert "\n" not in msg and "MNIST/raw" in msg
    assert "train-images-idx3-ubyte.gz" in msg and "name resolution" in msg
    assert "allow data.download" not in msg and "put the files there" in msg

# -- MNIST-1D ----------------------------------------------------------------------------

MNIST1D = {"train_samples": 60, "test_samples": 40, "seed": 42, "max_translation": 48,
           "corr_noise_scale": 0.25, "iid_noise_scale": 0.02, "shear_scale": 0.75,
           "scale_coeff": 0.4}


def test_mnist1d_is_the_packages_signals_split_by_the_study_seed():
    from mnist1d.data import get_dataset_args, make_dataset

    xtr, ytr, xte, yte, k, scale = datasets.mnist1d_raw(60, 40, 42, 0)
    assert (k, scale) == (10, 1.0) and xtr.shape == (60, 1, 1, 40) and xte.shape == (40, 1, 1, 40)
    args = get_dataset_args()
    args.num_samples, args.train_split = 100, 1.0
    pool = make_dataset(args)  # the package's own generator, its default seed 42
    x, y = pool["x"].astype(np.float32), pool["y"]
    perm = np.random.default_rng(0).permutation(100)
    assert np.array_equal(xte[:, 0, 0], x[perm[:40]]) and np.array_equal(yte, y[perm[:40]])
    assert np.array_equal(xtr[:, 0, 0], x[perm[40:]]) and np.array_equal(ytr, y[perm[40:]])
    # another study seed: the same pool, another split
    xtr1, _, xte1, _, _, _ = datasets.mnist1d_raw(60, 40, 42, 1)
    assert not np.array_equal(xte1, xte)
    assert sorted(map(bytes, np.concatenate([xtr1, xte1]))) == \
        sorted(map(bytes, np.concatenate([xtr, xte])))
    # the package's transforms are params: no translation is an easier, other set
    easy, *_ = datasets.mnist1d_raw(60, 40, 42, 0, max_translation=1)
    assert not np.array_equal(easy, xtr)


def test_mnist1d_prepared_folder_is_the_same_bytes_every_time(tmp_path):
    for name in ("a", "b"):
        m = data.prepare(tmp_path / name, dataset="mnist1d", root="unused", download=False,
                         test_fraction=0.5, seed=3, stamp={"x": 1}, mnist1d=MNIST1D)
    assert (m["n_train"], m["n_test"], m["input_shape"]) == (60, 40, [1, 1, 40])
    for f in ("train.pt", "test.pt", "manifest.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    prep = data.Prepared(tmp_path / "a")
    assert prep.x_train.shape == (60, 1, 1, 40) and abs(prep.x_train.mean().item()) < 1e-5
