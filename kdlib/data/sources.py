"""The one table of published files (URL, checksum), where each is looked for, and the decoded cache.

A file is looked for, in order, in the data folders (`paths.data_dirs`: data_dir, $KDLIB_DATA,
<repo>/data, <repo>/../shared/data), as an already extracted folder where the table names one, then
among earlier downloads in $KDLIB_CACHE/downloads, and is otherwise downloaded when allowed.
Checksums are verified once per archive, when its decoded cache is built, not at every load.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import paths
from ..config import canonical_json
from .core import DataError, atomic_savez, check_args, DATASETS
from .download import check_digest, download, file_digest, locked


@dataclass(frozen=True)
class Remote:
    """A published file: where to get it and the checksum its publisher or the reference loader gives."""
    filename: str
    url: Optional[str] = None       # None: no public copy of this exact file; local copies only
    md5: Optional[str] = None
    sha256: Optional[str] = None
    checksum_from: str = ""         # where the checksum was read, for the record
    folder: Optional[str] = None    # an extracted copy that may stand in for the archive
    folder_md5: tuple = ()          # (member, md5) pairs checked in an extracted copy
    layout: str = ""                # what is inside, for error messages
    hint: str = ""                  # an alternative, for error messages


_CIFAR10_MEMBERS = (
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"), ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"), ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"), ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"))
_CIFAR100_MEMBERS = (("train", "16019d7e3df5f24257cddd939b257f8d"), ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
                     ("meta", "7973b15100ade9c7d40fb424638fde48"))
_TV = "torchvision 0.29 datasets/{} (also in many other loaders)"

ARCHIVES: dict[str, Remote] = {r.filename: r for r in (
    Remote("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
           md5="c58f30108f718f92721af3b95e74349a", checksum_from=_TV.format("cifar.py"),
           folder="cifar-10-batches-py", folder_md5=_CIFAR10_MEMBERS,
           layout="cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}, python pickles",
           hint="With source=auto a local cifar10-jpeg.tar.gz is used instead when one is found."),
    Remote("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
           md5="eb9058c3a382ffc7106e4002c42a8d85", checksum_from=_TV.format("cifar.py"),
           folder="cifar-100-python", folder_md5=_CIFAR100_MEMBERS,
           layout="cifar-100-python/{train,test,meta}, python pickles"),
    Remote("train_32x32.mat", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
           md5="e26dedcc434d2e4c54c9b2d4a06d8373", checksum_from=_TV.format("svhn.py"),
           layout="MATLAB file: X 32x32x3xN uint8, y Nx1 (10 = digit 0)"),
    Remote("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
           md5="eb5a983be6a315427106f1b164d9cef3", checksum_from=_TV.format("svhn.py"),
           layout="MATLAB file: X 32x32x3xN uint8, y Nx1 (10 = digit 0)"),
    # Stanford publishes no checksum; this md5 is the one Avalanche's TinyImagenet loader (and several
    # loaders derived from it) verify, of the 248,100,043-byte zip.
    Remote("tiny-imagenet-200.zip", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
           md5="90528d7ca1a48142e341f4ef8d21d0de", checksum_from="Avalanche benchmarks/datasets/tiny_imagenet",
           layout="tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
                  "val/val_annotations.txt}"),
    Remote("speech_commands_v0.02.tar.gz", "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
           sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
           checksum_from="torchaudio datasets/speechcommands.py _CHECKSUMS (also TensorFlow Datasets)",
           layout="<word>/<speaker>_nohash_<n>.wav (16 kHz), validation_list.txt, testing_list.txt"),
    Remote("aclImdb_v1.tar.gz", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
           md5="7c2ac02c03563afcf9b574c7e56c153a", checksum_from="torchtext datasets/imdb.py",
           layout="aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt"),
    # re-packed copies without a published original of the same bytes: local only, not checksummed
    Remote("cifar10-jpeg.tar.gz", layout="cifar10-jpeg/{train,test}/<class>/NNNN.jpg (an ImageFolder layout)",
           hint="Or use the original pickled batches: source=pickle (downloadable)."),
    Remote("fsdd.tar.gz", layout="fsdd/recordings/<digit>_<speaker>_<index>.wav (8 kHz)",
           hint="Pack the recordings/ folder of the Free Spoken Digit Dataset repository "
                "(github.com/Jakobovski/free-spoken-digit-dataset) as fsdd/recordings/ in a tar.gz."),
)}


# ----------------------------------------------------------------------------------------------------
# finding a file

@dataclass(frozen=True)
class Location:
    remote: Remote
    path: Path       # where it is, or where a download will put it
    kind: str        # a key of _DESCRIBE

    def describe(self) -> str:
        return _DESCRIBE[self.kind](self)


_DESCRIBE: dict[str, Callable[[Location], str]] = {
    "archive": lambda loc: f"local archive {loc.path}",
    "folder": lambda loc: f"local extracted folder {loc.path}",
    "cached": lambda loc: f"cached download {loc.path}",
    "download": lambda loc: f"will download {loc.remote.url} into {loc.path.parent}",
}


def remote(filename: str) -> Remote:
    if filename not in ARCHIVES:
        raise KeyError(f"{filename!r} is not in the table of dataset files (kdlib.data.sources.ARCHIVES)")
    return ARCHIVES[filename]


def locate(filename: str, data_dir=None, download: bool = True) -> Location:
    """Where `filename` is (or will be downloaded to); DataError, saying how to get it, when it cannot be had."""
    r = remote(filename)
    dirs = paths.data_dirs(data_dir)
    for d in dirs:
        if (d / filename).is_file():
            return Location(r, d / filename, "archive")
        if r.folder and (d / r.folder).is_dir():
            return Location(r, d / r.folder, "folder")
    cached = paths.download_dir() / filename
    if cached.is_file():
        return Location(r, cached, "cached")
    if download and r.url:
        return Location(r, cached, "download")
    raise DataError(missing_message(r, dirs + [cached.parent], download))


def missing_message(r: Remote, searched: list, download: bool) -> str:
    what = r.filename + (f" (or its extracted folder {r.folder}/)" if r.folder else "")
    msg = f"{what} not found; searched: {', '.join(map(str, searched))}."
    msg += f" Expected layout: {r.layout}." if r.layout else ""
    if r.url and not download:
        msg += (f" Downloads are off: pass download=True (data_args: {{download: true}}) to fetch it from {r.url},"
                f" or download it yourself and put it in one of those folders (or set KDLIB_DATA to its folder).")
    elif r.url:
        msg += f" Get it from {r.url} and put it in one of those folders (or set KDLIB_DATA to its folder)."
    else:
        msg += (" It has no download here: put a copy in one of those folders, or pass data_dir / set KDLIB_DATA"
                " to the folder that holds it.")
    return msg + (f" {r.hint}" if r.hint else "")


_VERIFIED: set = set()  # (path, size, mtime_ns) of files whose checksum was checked in this process


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def fetch(filename: str, data_dir=None, download_ok: bool = True) -> Path:
    """The path of a local copy of `filename`, downloading it first if need be."""
    loc = locate(filename, data_dir, download_ok)
    if loc.kind == "download":
        with locked(loc.path):
            if not loc.path.is_file():  # another process may have fetched it while we waited
                download(loc.remote.url, loc.path, md5=loc.remote.md5, sha256=loc.remote.sha256)
                _VERIFIED.add(_stamp(loc.path))
    return loc.path


def entry_for(path: Path) -> Optional[Remote]:
    """The table's entry for a local archive or extracted folder, by its name (None if not in the table)."""
    return next((r for r in ARCHIVES.values() if path.name in (r.filename, r.folder)), None)


def verify(path: Path) -> None:
    """Check a local archive (or an extracted folder's members) against the table; DataError on mismatch."""
    r = entry_for(path)
    if r is None:
        return
    files = ([(path / m, md5, None) for m, md5 in r.folder_md5] if path.is_dir() else [(path, r.md5, r.sha256)])
    for f, md5, sha256 in files:
        if not (md5 or sha256):
            continue
        if not f.is_file():
            raise DataError(f"{f} is missing from the extracted folder {path} (expected: {r.layout})")
        if _stamp(f) in _VERIFIED:
            continue
        check_digest(f, {a: file_digest(f, a) if want else None for a, want in (("md5", md5), ("sha256", sha256))},
                     md5, sha256)
        _VERIFIED.add(_stamp(f))


# ----------------------------------------------------------------------------------------------------
# decoded arrays

def _signature(path: Path) -> list:
    """Path, size and mtime of a file, or of every file in a folder: a changed or other copy gets its own
    cache entry (and is verified again)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [list(_stamp(p.resolve())) for p in files]


def decoded(tag: str, sources: list[Path], args: dict, build: Callable[[], dict]) -> dict:
    """Arrays decoded from `sources` by `build`, cached as .npz keyed by the files' size/mtime and `args`.
    The checksums are verified when the cache is built."""
    key = hashlib.sha256(canonical_json({"files": [_signature(p) for p in sources], "args": args}).encode())
    cached = paths.cache_dir() / f"{tag}-{key.hexdigest()[:12]}.npz"
    if not cached.exists():
        with locked(cached):
            if not cached.exists():  # another process may have built it while we waited
                for p in sources:
                    verify(p)
                print(f"kdlib: decoding {', '.join(p.name for p in sources)} once into {cached}",
                      file=sys.stderr, flush=True)
                atomic_savez(cached, **build())
    with np.load(cached) as z:
        return {k: z[k] for k in z.files}


def checksum_note(path: Path) -> str:
    """How a source file was checked, for the bundle's `source` text."""
    r = entry_for(path)
    if r is not None and path.is_dir() and r.folder_md5:
        return "members' md5 verified"
    if r is not None and not path.is_dir() and (r.md5 or r.sha256):
        return f"{'md5' if r.md5 else 'sha256'} verified"
    return "not checksummed"


# ----------------------------------------------------------------------------------------------------
# the early check a driver runs for every dataset of a plan

def files_needed(name: str, args: dict) -> tuple:
    """The table's file names a dataset reads with these args (empty for package data)."""
    files = DATASETS.meta(name).get("files", ())
    return tuple(files(args) if callable(files) else files)


def check_available(name: str, **args) -> str:
    """A one-line description of where the data will come from, without decoding anything; DataError
    (the same message `load_dataset` would give) when it cannot be had."""
    meta = check_args(name, args)
    files = files_needed(name, args)
    if not files:
        package = meta.get("package")
        if package and importlib.util.find_spec(package) is None:
            raise DataError(f"dataset {name!r} needs the package {package!r}: pip install -r requirements.txt")
        return f"{name}: offline, inside the installed package {package}"
    data_dir, download_ok = args.get("data_dir"), args.get("download", True)
    locs = [locate(f, data_dir, download_ok) for f in files]
    if len(locs) == 1:
        return f"{name}: {locs[0].describe()}"
    return f"{name}: " + "; ".join(f"{loc.remote.filename}: {loc.describe()}" for loc in locs)
