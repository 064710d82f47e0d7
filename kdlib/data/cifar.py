"""CIFAR-10 and CIFAR-100: the original python-pickle archives (or the folders torchvision extracts) and
the local JPEG re-encoding of CIFAR-10."""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..paths import find_local
from .archives import archive_errors, open_tar
from .core import DATASETS, DataError
from .images import NORMALISE_TEXT, check_normalise, normalise_pair
from .sources import checksum_note, decoded, fetch, remote

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# the customary channel statistics of the training sets (kept: existing results were made with them)
CIFAR_MEAN = {10: (0.4914, 0.4822, 0.4465), 100: (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {10: (0.2470, 0.2435, 0.2616), 100: (0.2673, 0.2564, 0.2762)}
JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"


@dataclass(frozen=True)
class PickleLayout:
    archive: str
    train: tuple
    test: tuple
    label_key: str
    meta: str
    names_key: str


PICKLES = {
    10: PickleLayout("cifar-10-python.tar.gz", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                     "labels", "batches.meta", "label_names"),
    100: PickleLayout("cifar-100-python.tar.gz", ("train",), ("test",), "fine_labels", "meta", "fine_label_names"),
}


class _ArraysOnly(pickle.Unpickler):
    """The batches hold dicts of lists and numpy arrays: refuse any other class, so a tampered file cannot
    run code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # protocol-2 bytes from python 3

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"a CIFAR batch should not reference {module}.{name}")
        return super().find_class(module, name)


def _unpickle(raw: bytes, where: str) -> dict:
    try:  # latin1 reads the python-2 pickles; keys come back as str (or bytes, from a bytes-keyed file)
        d = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{where} is not a CIFAR python pickle ({e})") from e
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _read_members(path: Path, folder: str, names: set) -> dict:
    """Raw bytes of `folder/<name>` from a .tar.gz or from an extracted folder."""
    if path.is_dir():
        found = {n: (path / n).read_bytes() for n in names if (path / n).is_file()}
    else:
        found = {}
        with archive_errors(path), open_tar(path) as tar:
            for m in tar:
                p = Path(m.name)
                if m.isfile() and p.parent.name == folder and p.name in names:
                    found[p.name] = tar.extractfile(m).read()
    missing = sorted(names - set(found))
    if missing:
        raise DataError(f"{path} lacks {', '.join(f'{folder}/{n}' for n in missing)}")
    return found


def read_cifar_pickles(path: Path, n_classes: int) -> dict:
    """uint8 NHWC images, labels and class names from the python-pickle layout (archive or folder)."""
    lay = PICKLES[n_classes]
    folder = remote(lay.archive).folder
    raw = _read_members(path, folder, set(lay.train + lay.test + (lay.meta,)))
    out = {}
    for split, names in (("train", lay.train), ("test", lay.test)):
        batches = [_unpickle(raw[n], f"{path}:{folder}/{n}") for n in names]
        data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path}: {split} data has shape {data.shape}, expected N x 3072")
        out[f"x_{split}"] = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel-major rows -> NHWC
        out[f"y_{split}"] = np.concatenate([np.asarray(b[lay.label_key], dtype=np.int64) for b in batches])
    out["class_names"] = np.array(_unpickle(raw[lay.meta], f"{path}:{folder}/{lay.meta}")[lay.names_key])
    return out


def read_cifar_jpeg_archive(path: Path) -> dict:
    """Decode an ImageFolder-layout archive `<root>/{train,test}/<class>/*.jpg` into uint8 arrays."""
    from PIL import Image

    parts = {"train": ([], []), "test": ([], [])}
    with archive_errors(path), open_tar(path) as tar:  # PIL's UnidentifiedImageError is an OSError
        for m in tar:
            p = Path(m.name)
            if not m.isfile() or p.suffix.lower() not in (".jpg", ".jpeg", ".png") or len(p.parts) < 3:
                continue
            split, cls = p.parts[-3], p.parts[-2]
            if split not in parts or cls not in CIFAR10_CLASSES:
                continue
            img = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
            parts[split][0].append(np.asarray(img, dtype=np.uint8))
            parts[split][1].append(CIFAR10_CLASSES.index(cls))
    if not parts["train"][0] or not parts["test"][0]:
        raise DataError(f"{path} holds no <train|test>/<class>/*.jpg images of the CIFAR-10 classes")
    return {f"{k}_{s}": np.stack(v) if k == "x" else np.array(v)
            for s, (xs, ys) in parts.items() for k, v in (("x", xs), ("y", ys))}


def _from_pickles(n_classes: int, data_dir, download: bool) -> tuple:
    path = fetch(PICKLES[n_classes].archive, data_dir, download)
    z = decoded(f"cifar{n_classes}-pickle", [path], {}, lambda: read_cifar_pickles(path, n_classes))
    src = f"{path.name} (original pickled batches, {checksum_note(path)})"
    return z["x_train"], z["y_train"], z["x_test"], z["y_test"], [str(c) for c in z["class_names"]], src


def _from_jpeg(data_dir, download: bool) -> tuple:
    path = fetch(JPEG_ARCHIVE, data_dir, download)
    z = decoded("cifar10-jpeg", [path], {}, lambda: read_cifar_jpeg_archive(path))
    src = f"local JPEG copy {path.name} (lossy re-encoding of CIFAR-10)"
    return z["x_train"], z["y_train"], z["x_test"], z["y_test"], CIFAR10_CLASSES, src


# source -> the file it reads given data_dir ("auto": the local JPEG copy if there is one, as before)
CIFAR10_SOURCES = {
    "auto": lambda data_dir: JPEG_ARCHIVE if find_local(JPEG_ARCHIVE, data_dir) else PICKLES[10].archive,
    "jpeg": lambda data_dir: JPEG_ARCHIVE,
    "pickle": lambda data_dir: PICKLES[10].archive,
    "torchvision": lambda data_dir: PICKLES[10].archive,  # the old name of "pickle": torchvision's files
}
_READERS = {JPEG_ARCHIVE: _from_jpeg, PICKLES[10].archive: partial(_from_pickles, 10)}


def _cifar10_file(source: str, data_dir) -> str:
    if source not in CIFAR10_SOURCES:
        raise ConfigError(f"unknown CIFAR-10 source {source!r}; allowed: {', '.join(CIFAR10_SOURCES)}")
    return CIFAR10_SOURCES[source](data_dir)


def _finish(n_classes, xtr, ytr, xte, yte, classes, src, normalise) -> tuple:
    stats = (CIFAR_MEAN[n_classes], CIFAR_STD[n_classes])
    xtr, xte = normalise_pair(xtr, xte, normalise, stats)
    if normalise != "channel":  # the default keeps the source text of earlier results
        src += f", {NORMALISE_TEXT[normalise]}"
    return xtr, ytr, xte, yte, {"source": src, "class_names": list(classes)}


@DATASETS.register("cifar10", n_train=50000, n_test=10000, modality="image", n_classes=10, input_shape=(3, 32, 32), args=("source", "normalise"), augmentable=True,
                   files=lambda a: (_cifar10_file(a.get("source", "auto"), a.get("data_dir")),),
                   description="CIFAR-10 (Krizhevsky, 2009; www.cs.toronto.edu/~kriz/cifar.html): 50,000 / 10,000 "
                               "32x32 colour images, from the python pickles or a local JPEG copy; no formal "
                               "licence, cite the report")
def _cifar10(split_seed: int, source: str = "auto", normalise: str = "channel", data_dir=None,
             download: bool = True, **_):
    check_normalise(normalise)
    parts = _READERS[_cifar10_file(source, data_dir)](data_dir, download)
    return _finish(10, *parts, normalise)


@DATASETS.register("cifar100", n_train=50000, n_test=10000, modality="image", n_classes=100, input_shape=(3, 32, 32), args=("normalise",), augmentable=True,
                   files=(PICKLES[100].archive,),
                   description="CIFAR-100 (Krizhevsky, 2009): 50,000 / 10,000 32x32 colour images, 100 fine "
                               "classes, from the python pickles; no formal licence, cite the report")
def _cifar100(split_seed: int, normalise: str = "channel", data_dir=None, download: bool = True, **_):
    check_normalise(normalise)
    return _finish(100, *_from_pickles(100, data_dir, download), normalise)
