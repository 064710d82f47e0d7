"""Text: a word tokenizer and vocabulary shared by the IMDB loaders, and the official IMDB archive."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePosixPath

import numpy as np

from .core import DATASETS, DataError
from .sources import checksum_note, decoded, fetch
from .archives import archive_errors, open_tar

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


IMDB_LABELS = {"neg": 0, "pos": 1}


def read_aclimdb(path) -> dict:
    """Reviews of aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt (unsup/ skipped), per split, sorted by
    label then id so the order does not depend on how the archive was packed."""
    rows = {"train": [], "test": []}
    with archive_errors(path), open_tar(path) as tar:
        for m in tar:
            p = PurePosixPath(m.name)
            if not (m.isfile() and p.suffix == ".txt" and len(p.parts) >= 3):
                continue
            split, label = p.parts[-3], p.parts[-2]
            if split in rows and label in IMDB_LABELS:
                review_id = int(p.stem.split("_")[0])
                rows[split].append((IMDB_LABELS[label], review_id, tar.extractfile(m).read().decode("utf-8")))
    if not rows["train"] or not rows["test"]:
        raise DataError(f"{path} holds no aclImdb/<train|test>/<pos|neg>/<id>_<rating>.txt reviews")
    return {s: sorted(r) for s, r in rows.items()}


IMDB_ARCHIVE = "aclImdb_v1.tar.gz"  # the name in sources.ARCHIVES


@DATASETS.register("imdb_full", n_train=25000, n_test=25000, modality="text", n_classes=2, input_shape=(256,), args=("vocab_size", "max_len"),
                   files=(IMDB_ARCHIVE,),
                   description="Large Movie Review Dataset v1.0 (Maas et al., ACL 2011; ai.stanford.edu/~amaas): "
                               "the official 25,000 / 25,000 train/test split; free for research, cite the paper")
def _imdb_full(split_seed: int, vocab_size: int = 10000, max_len: int = 256, data_dir=None, download: bool = True, **_):
    path = fetch(IMDB_ARCHIVE, data_dir, download)

    def build():
        rows = read_aclimdb(path)
        vocab = build_vocab([t for _, _, t in rows["train"]], vocab_size)  # training texts only
        return {f"{k}_{s}": v for s, r in rows.items()
                for k, v in (("x", encode([t for _, _, t in r], vocab, max_len)), ("y", np.array([y for y, _, _ in r])))}

    z = decoded("imdb_full", [path], {"vocab_size": vocab_size, "max_len": max_len}, build)
    return z["x_train"], z["y_train"], z["x_test"], z["y_test"], {
        "source": f"{path.name} (Large Movie Review Dataset v1.0, {checksum_note(path)}): official train/test "
                  "split, vocabulary from the training reviews",
        "class_names": ["negative", "positive"], "vocab_size": vocab_size, "max_len": max_len}
