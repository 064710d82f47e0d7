"""Colour images: pixel normalisation shared by the image loaders, SVHN and Tiny ImageNet."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..config import ConfigError
from .archives import archive_errors
from .core import DATASETS, DataError
from .sources import checksum_note, decoded, fetch

# ----------------------------------------------------------------------------------------------------
# normalisation: uint8 NHWC in, float32 NCHW out, the test set scaled with the training set's numbers


def channel_stats(x: np.ndarray) -> tuple:
    """Per-channel mean and std of x / 255 over a uint8 NHWC set, in float64, a block at a time."""
    total, total_sq, n = np.zeros(x.shape[-1]), np.zeros(x.shape[-1]), 0
    for i in range(0, len(x), 4096):
        block = x[i:i + 4096].reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
        total, total_sq, n = total + block.sum(0), total_sq + (block ** 2).sum(0), n + len(block)
    mean = total / n
    return tuple(mean), tuple(np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0)))


# mode -> (mean, std) from (training images, the dataset's customary channel statistics or None)
NORMALISATIONS: dict[str, Callable[[np.ndarray, Optional[tuple]], tuple]] = {
    "half": lambda xtr, stats: ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # (x/255 - 0.5) / 0.5: the authors' convention
    "channel": lambda xtr, stats: stats or channel_stats(xtr),      # per-channel standardisation
}
NORMALISE_TEXT = {"half": "scaled to [-1, 1]", "channel": "standardised per channel"}


def check_normalise(mode: str) -> str:
    if mode not in NORMALISATIONS:
        raise ConfigError(f"unknown normalise {mode!r}; allowed: {', '.join(NORMALISATIONS)}")
    return mode


def normalise_images(x: np.ndarray, mean, std) -> np.ndarray:
    x = x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    mean = np.array(mean, dtype=np.float32)[None, :, None, None]
    std = np.array(std, dtype=np.float32)[None, :, None, None]
    return (x - mean) / std


def normalise_pair(xtr: np.ndarray, xte: np.ndarray, mode: str, stats: Optional[tuple] = None):
    mean, std = NORMALISATIONS[check_normalise(mode)](xtr, stats)
    return normalise_images(xtr, mean, std), normalise_images(xte, mean, std)


# ----------------------------------------------------------------------------------------------------
# SVHN


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's SVHN format: X 32x32x3xN uint8 -> N x 32 x 32 x 3; y Nx1, 10 meaning digit 0 -> 0."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises ValueError / MatReadError / OSError for a bad file
        raise DataError(f"{path} is not a readable MATLAB file ({type(e).__name__}: {e}); "
                        "delete it and copy or download it again.") from e
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise DataError(f"{path}: expected X of shape 32x32x3xN and y of N labels, found "
                        f"{getattr(x, 'shape', None)} and {getattr(y, 'shape', None)}")
    y = y.reshape(-1).astype(np.int64)
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2), dtype=np.uint8), y


SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")  # the names in sources.ARCHIVES


@DATASETS.register("svhn", n_train=73257, n_test=26032, modality="image", n_classes=10, input_shape=(3, 32, 32), args=("normalise",), augmentable=False,
                   files=SVHN_FILES,
                   description="SVHN cropped digits (Netzer et al., 2011; ufldl.stanford.edu/housenumbers): "
                               "73,257 / 26,032 32x32 colour images, no 'extra' set; non-commercial use only")
def _svhn(split_seed: int, normalise: str = "channel", data_dir=None, download: bool = True, **_):
    check_normalise(normalise)
    files = [fetch(f, data_dir, download) for f in SVHN_FILES]

    def build():
        (xtr, ytr), (xte, yte) = (read_svhn_mat(p) for p in files)
        return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}

    z = decoded("svhn", files, {}, build)
    xtr, xte = normalise_pair(z["x_train"], z["x_test"], normalise)
    return xtr, z["y_train"], xte, z["y_test"], {
        "source": f"SVHN {files[0].name} + {files[1].name} ({checksum_note(files[0])}), "
                  f"{NORMALISE_TEXT[normalise]}", "class_names": list(map(str, range(10)))}


# ----------------------------------------------------------------------------------------------------
# Tiny ImageNet

TINY_ROOT = "tiny-imagenet-200"


def _member(zf: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return zf.read(f"{TINY_ROOT}/{name}")
    except KeyError:
        raise DataError(f"{path} has no {TINY_ROOT}/{name}: is it tiny-imagenet-200.zip?") from None


def read_tiny_imagenet(path: Path) -> dict:
    """train/<wnid>/images/*.JPEG labelled by folder, val/images/*.JPEG labelled by val_annotations.txt;
    classes are the sorted wnids; images sorted by file name; greyscale ones converted to RGB."""
    from PIL import Image

    with archive_errors(path), zipfile.ZipFile(path) as zf:
        wnids = sorted(_member(zf, path, "wnids.txt").decode().split())
        val_labels = dict(line.split("\t")[:2] for line in _member(zf, path, "val/val_annotations.txt").decode().splitlines()
                          if line.strip())
        train, val = [], []
        for name in zf.namelist():
            parts = name.split("/")
            if not name.lower().endswith(".jpeg") or parts[0] != TINY_ROOT:
                continue
            if parts[1:2] == ["train"] and len(parts) == 5 and parts[3] == "images":
                train.append((name, parts[2]))
            elif parts[1:3] == ["val", "images"] and len(parts) == 4:
                if parts[3] not in val_labels:
                    raise DataError(f"{path}: {name} has no line in val/val_annotations.txt")
                val.append((name, val_labels[parts[3]]))

        index = {w: i for i, w in enumerate(wnids)}

        def decode(items):
            xs, ys = [], []
            for name, wnid in sorted(items):
                if wnid not in index:
                    raise DataError(f"{path}: {name} is of class {wnid}, which is not in wnids.txt")
                img = Image.open(io.BytesIO(zf.read(name))).convert("RGB")
                if img.size != (64, 64):
                    raise DataError(f"{path}: {name} is {img.size[0]}x{img.size[1]}, expected 64x64")
                xs.append(np.asarray(img, dtype=np.uint8))
                ys.append(index[wnid])
            return np.stack(xs), np.array(ys, dtype=np.int64)

        if not train or not val:
            raise DataError(f"{path} holds no {TINY_ROOT}/train/<wnid>/images/*.JPEG or val/images/*.JPEG")
        (xtr, ytr), (xte, yte) = decode(train), decode(val)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, "wnids": np.array(wnids)}


TINYIMAGENET_ZIP = "tiny-imagenet-200.zip"


@DATASETS.register("tinyimagenet", n_train=100000, n_test=10000, modality="image", n_classes=200, input_shape=(3, 64, 64), args=("normalise",), augmentable=True,
                   files=(TINYIMAGENET_ZIP,),
                   description="Tiny ImageNet (Stanford CS231n): 200 classes, 100,000 train / 10,000 validation "
                               "(used as the test set) 64x64 colour images; ImageNet terms (non-commercial research)")
def _tinyimagenet(split_seed: int, normalise: str = "channel", data_dir=None, download: bool = True, **_):
    check_normalise(normalise)
    path = fetch(TINYIMAGENET_ZIP, data_dir, download)
    z = decoded("tinyimagenet", [path], {}, lambda: read_tiny_imagenet(path))
    xtr, xte = normalise_pair(z["x_train"], z["x_test"], normalise)
    return xtr, z["y_train"], xte, z["y_test"], {
        "source": f"{path.name} ({checksum_note(path)}); the validation split is the test set; "
                  f"{NORMALISE_TEXT[normalise]}", "class_names": [str(w) for w in z["wnids"]]}
