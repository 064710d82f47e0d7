"""Fetch one file over HTTP(S) into place, verifying the checksum its publisher gives."""
from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

from .core import DataError

CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_digest(path: Path, found: dict, md5: Optional[str], sha256: Optional[str]) -> None:
    """Raise DataError if a published checksum differs from the one found (`found`: algorithm -> hex)."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected and found[algorithm] != expected.lower():
            raise DataError(f"{path}: {algorithm} checksum mismatch: expected {expected.lower()}, found "
                            f"{found[algorithm]}. The file is corrupt, truncated or a different version: "
                            "delete it and copy or download it again.")


def _progress(name: str) -> Callable[[int, int], None]:
    """Plain-text progress on stderr (readable in CI and job logs), at most every 5 s, and at the end."""
    last = [0.0]

    def report(done: int, total: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - last[0] < 5.0:
            return
        last[0] = now
        size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB ({done / total:.0%})" if total else f"{done / 1e6:.1f} MB"
        print(f"kdlib: downloading {name}: {size}" + (" done" if final else ""), file=sys.stderr, flush=True)

    return report


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on `.<name>.lock` beside `path`: parallel runs then fetch or decode a file
    once, not side by side into the same partial file. The (empty) lock file stays: removing it could let
    a waiting process lock a file nobody else sees."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, the atomic renames still keep files whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download(url: str, dest: str | os.PathLike, md5: Optional[str] = None, sha256: Optional[str] = None,
             timeout: float = 60.0) -> Path:
    """Stream `url` to `dest.part`, verify the checksum(s) given, then rename into place, so `dest`
    exists only when complete and verified. A mismatch or a network error deletes the partial file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    report = _progress(dest.name)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total, done = int(response.headers.get("Content-Length") or 0), 0
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                for h in hashes.values():
                    h.update(block)
                done += len(block)
                report(done, total)
        report(done, total, final=True)
        check_digest(dest, {k: h.hexdigest() for k, h in hashes.items()}, md5, sha256)
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url} to {dest} ({type(e).__name__}: {e}). Check the network, "
                        f"or download it by other means and put it in {dest.parent} or a data folder.") from e
    except DataError:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest
