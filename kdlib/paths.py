"""Where local data copies are looked for and where downloads and decoded caches live."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def from_root(path: str | os.PathLike) -> Path:
    """A path as given if absolute, else relative to the repository root (not to the current folder),
    so notebooks find the same results wherever they are opened."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def _cache_root() -> Path:
    return Path(os.environ.get("KDLIB_CACHE", Path.home() / ".cache" / "kdlib"))


def cache_dir() -> Path:
    """KDLIB_CACHE, else ~/.cache/kdlib. Downloads and derived files only: safe to delete."""
    path = _cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def download_dir() -> Path:
    """Where archives fetched from their publishers are kept (not created until a download starts)."""
    return _cache_root() / "downloads"


def data_dirs(extra: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for local dataset copies, in order: an explicit folder, $KDLIB_DATA,
    <repo>/data, <repo>/../shared/data."""
    dirs = []
    if extra:
        dirs.append(Path(extra))
    if os.environ.get("KDLIB_DATA"):
        dirs.append(Path(os.environ["KDLIB_DATA"]))
    dirs += [REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"]
    return dirs


def find_local(filename: str, extra: str | os.PathLike | None = None) -> Path | None:
    """The first `filename` (a file) in the data folders, else None."""
    for d in data_dirs(extra):
        if (d / filename).is_file():
            return d / filename
    return None
