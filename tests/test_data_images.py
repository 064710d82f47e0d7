"""CIFAR pickles, SVHN .mat files and Tiny ImageNet's zip, each written in its original format (tests/datafiles.py)."""
import io
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from kdlib.data import ARCHIVES, DATASETS, DataError, _load_cached, check_available, load_dataset
from tests import datafiles
from tests.datafiles import trust  # the test archive's own md5 in the checksum table


@pytest.fixture
def data(isolated_data):
    return isolated_data


def half(v):
    return (np.asarray(v, dtype=np.float64) / 255.0 - 0.5) / 0.5


# ----------------------------------------------------------------------------------------------------
# CIFAR

def _cifar10_tar(folder):
    """cifar-10-python.tar.gz of 100 training images (20 a batch) and 20 test images; returns all 120."""
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8), (np.arange(120) * 7) % 10
    datafiles.cifar10(folder, x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:],
                      class_names=[f"c{i}" for i in range(10)])
    return x, y


def test_cifar10_pickle_archive_shapes_labels_normalisations(data, monkeypatch):
    x, y = _cifar10_tar(data)
    trust(monkeypatch, data / "cifar-10-python.tar.gz")
    d = load_dataset("cifar10", source="pickle")
    assert d.input_shape == (3, 32, 32) and len(d.y_train) == 100 and len(d.y_test) == 20
    assert d.y_train.tolist() == y[:100].tolist() and d.y_test.tolist() == y[100:].tolist()  # batches 1..5 in order
    assert d.class_names == [f"c{i}" for i in range(10)] and "md5 verified" in d.source
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
    np.testing.assert_allclose(d.x_test[3, :, 9, 2].numpy(), (x[103, 9, 2] / 255.0 - mean) / std, rtol=1e-5)
    h = load_dataset("cifar10", source="pickle", normalise="half")
    np.testing.assert_allclose(h.x_train[42, :, 31, 0].numpy(), half(x[42, 31, 0]), atol=1e-6)
    assert float(h.x_train.min()) >= -1 and float(h.x_train.max()) <= 1 and "scaled to [-1, 1]" in h.source
    assert torch.equal(load_dataset("cifar10", source="auto").x_train, d.x_train)  # no JPEG copy: the pickles
    with pytest.raises(ValueError, match="unknown normalise 'imagenet'; allowed: half, channel"):
        load_dataset("cifar10", source="pickle", normalise="imagenet")


def test_cifar10_auto_prefers_a_local_jpeg_copy(data, monkeypatch):
    _cifar10_tar(data)
    trust(monkeypatch, data / "cifar-10-python.tar.gz")
    datafiles.cifar10_jpeg(data, classes=("airplane", "truck"), n_train=2, n_test=1, colour=lambda c: (200 * c, 40, 90))
    assert check_available("cifar10") == f"cifar10: local archive {data / 'cifar10-jpeg.tar.gz'}"
    d = load_dataset("cifar10")
    assert "JPEG" in d.source and d.y_train.tolist() == [0, 0, 9, 9] and d.y_test.tolist() == [0, 9]
    assert "pickled" in load_dataset("cifar10", source="pickle").source


def test_cifar100_archive_fine_labels(data, monkeypatch):
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8), (np.arange(120) * 3) % 100
    datafiles.cifar100(data, x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    trust(monkeypatch, data / "cifar-100-python.tar.gz")
    d = load_dataset("cifar100", normalise="half")
    assert d.y_train.tolist() == y[:100].tolist() and len(d.class_names) == 100 and d.n_classes == 100
    np.testing.assert_allclose(d.x_train[5, :, 1, 2].numpy(), half(x[5, 1, 2]), atol=1e-6)


def test_cifar_pickles_as_python_2_wrote_them(data, monkeypatch):
    """The real batches: protocol 2, bytes keys, arrays pickled under numpy.core (numpy 1's name)."""
    x = np.random.default_rng(5).integers(0, 256, (4, 3072), dtype=np.uint8)  # the rows as stored
    nhwc = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    datafiles.cifar100_folder(data, nhwc, [3, 1, 4, 1], nhwc[:2], [5, 9], class_names=[f"f{i}" for i in range(100)],
                              python2=True)
    monkeypatch.setitem(ARCHIVES, "cifar-100-python.tar.gz",
                        replace(ARCHIVES["cifar-100-python.tar.gz"], folder_md5=()))
    d = load_dataset("cifar100", normalise="half")
    assert d.y_train.tolist() == [3, 1, 4, 1] and d.class_names[99] == "f99"
    np.testing.assert_allclose(d.x_train[2, :, 0, 1].numpy(), half(x[2, [1, 1025, 2049]]), atol=1e-6)  # channel-major


def test_cifar_pickles_may_not_hold_other_objects(data, tmp_path, monkeypatch):
    import pickle

    folder = data / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(pickle.dumps({"data": io.BytesIO(b"x")}))
    monkeypatch.setitem(ARCHIVES, "cifar-100-python.tar.gz",
                        replace(ARCHIVES["cifar-100-python.tar.gz"], folder_md5=()))
    with pytest.raises(DataError, match=r"train is not a CIFAR python pickle .*_io.BytesIO"):
        load_dataset("cifar100")


# ----------------------------------------------------------------------------------------------------
# SVHN

_svhn_mat = datafiles.svhn_mat  # (path, n, seed) -> X 32x32x3xN, y Nx1 with labels 1..10 cycling (10 meaning digit 0)


def test_svhn_mat_files_labels_and_normalisation(data, monkeypatch):
    xtr, ytr = _svhn_mat(data / "train_32x32.mat", 30, 0)
    xte, _ = _svhn_mat(data / "test_32x32.mat", 20, 1)
    for f in ("train_32x32.mat", "test_32x32.mat"):
        trust(monkeypatch, data / f)
    d = load_dataset("svhn", normalise="half")
    assert d.input_shape == (3, 32, 32) == DATASETS.meta("svhn")["input_shape"]
    assert len(d.y_train) == 30 and len(d.y_test) == 20
    assert d.y_train[:11].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # 10 -> 0
    assert d.y_train.tolist() == (ytr.ravel() % 10).tolist()
    np.testing.assert_allclose(d.x_train[7, :, 4, 30].numpy(), half(xtr[4, 30, :, 7]), atol=1e-6)  # HWCN -> NCHW
    np.testing.assert_allclose(d.x_test[19, :, 0, 0].numpy(), half(xte[0, 0, :, 19]), atol=1e-6)
    c = load_dataset("svhn")  # channel: standardised with the training set's own statistics
    means, stds = c.x_train.mean((0, 2, 3)), c.x_train.std((0, 2, 3), unbiased=False)
    assert torch.allclose(means, torch.zeros(3), atol=1e-5) and torch.allclose(stds, torch.ones(3), atol=1e-4)
    assert "md5 verified" in c.source and "standardised per channel" in c.source


def test_svhn_decoded_once_then_read_from_the_cache(data, monkeypatch):
    for f, seed in (("train_32x32.mat", 0), ("test_32x32.mat", 1)):
        _svhn_mat(data / f, 12, seed)
        trust(monkeypatch, data / f)
    first = load_dataset("svhn")
    _load_cached.cache_clear()
    monkeypatch.setattr("kdlib.data.images.read_svhn_mat", lambda *a: pytest.fail("re-read the .mat files"))
    assert torch.equal(load_dataset("svhn").x_train, first.x_train)
    _load_cached.cache_clear()
    os.utime(data / "test_32x32.mat", (1, 1))  # a changed copy (other mtime) is decoded again
    with pytest.raises(pytest.fail.Exception, match="re-read"):
        load_dataset("svhn")


def test_svhn_unreadable_or_misshapen_files(data, monkeypatch):
    from scipy.io import savemat

    savemat(data / "train_32x32.mat", {"X": np.zeros((28, 28, 1, 2), np.uint8), "y": np.ones((2, 1))})
    (data / "test_32x32.mat").write_bytes(b"MATLAB but not really")
    for f in ("train_32x32.mat", "test_32x32.mat"):
        trust(monkeypatch, data / f)
    with pytest.raises(DataError, match=r"train_32x32.mat: expected X of shape 32x32x3xN"):
        load_dataset("svhn")
    (data / "train_32x32.mat").unlink()
    _svhn_mat(data / "train_32x32.mat", 4, 0)
    trust(monkeypatch, data / "train_32x32.mat")
    with pytest.raises(DataError, match=r"test_32x32.mat is not a readable MATLAB file"):
        load_dataset("svhn")


# ----------------------------------------------------------------------------------------------------
# Tiny ImageNet

WNIDS = ["n09999999", "n01443537", "n02085620"]  # not sorted in wnids.txt, as in the real file
COLOURS = {"n01443537": (250, 10, 10), "n02085620": (10, 250, 10), "n09999999": (10, 10, 250)}


VAL = [("val_0.JPEG", "n02085620"), ("val_1.JPEG", "n09999999"), ("val_2.JPEG", "n01443537"), ("val_3.JPEG", "n02085620")]


def _tiny_zip(path, val_lines=None):
    """2 solid-colour training images per wnid, n09999999_1 greyscale (the real set has some), VAL labelled."""
    datafiles.tinyimagenet(path.parent, wnids=WNIDS, train_per_class=2, val=VAL, colours=COLOURS,
                           grey={("n09999999", 1)}, val_lines=val_lines)


def test_tinyimagenet_zip_labels_from_folders_and_annotations(data, monkeypatch):
    _tiny_zip(data / "tiny-imagenet-200.zip")
    trust(monkeypatch, data / "tiny-imagenet-200.zip")
    d = load_dataset("tinyimagenet", normalise="half")
    assert d.input_shape == (3, 64, 64) == DATASETS.meta("tinyimagenet")["input_shape"] and d.n_classes == 200
    assert d.class_names == sorted(WNIDS)  # class index = position among the sorted wnids
    assert d.y_train.tolist() == [0, 0, 1, 1, 2, 2] and d.y_test.tolist() == [1, 2, 0, 1]  # val by annotations
    np.testing.assert_allclose(d.x_test[1].mean((1, 2)).numpy(), half(COLOURS["n09999999"]), atol=0.03)
    grey = d.x_train[5]  # converted to RGB: three equal channels
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert "validation split is the test set" in d.source and "md5 verified" in d.source


def test_tinyimagenet_checks(data, monkeypatch):
    path = data / "tiny-imagenet-200.zip"
    _tiny_zip(path, val_lines=["val_0.JPEG\tn02085620\t0\t0\t1\t1"])
    trust(monkeypatch, path)
    with pytest.raises(DataError, match=r"val_1.JPEG has no line in val/val_annotations.txt"):
        load_dataset("tinyimagenet")
    path.unlink()
    _tiny_zip(path)
    with pytest.raises(DataError, match=rf"{path}: md5 checksum mismatch: expected"):
        load_dataset("tinyimagenet")  # the table still holds the md5 of the earlier file
    path.write_bytes(b"PK\x03\x04 truncated")
    trust(monkeypatch, path)
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_dataset("tinyimagenet")
