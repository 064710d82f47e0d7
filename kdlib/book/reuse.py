"""Whether a chapter must be executed again: an executed chapter records a digest of everything its output
can depend on, and a later build with the same digest reuses it instead of running its kernel again (a
rebuild that trained nothing then takes the book build's seconds, not the chapters' minutes).

The digest is deliberately wide, so that a reused page can never show what the inputs no longer say:
- the chapter's notebook, its parameters, title and book metadata;
- the code: `git describe` with its dirty mark (the appendix prints it) and the bytes of every source file
  of `kdlib/` and `notebooks/` (an uncommitted edit changes them, not the mark);
- the study file's bytes, the Python version and every installed package's version;
- every file of every results folder the book reads (path, size, modification time), whichever chapter reads
  it, and the GPU check reports the run plan reads. Left out: the driver's own log, which the book phase
  rewrites at every build (a chapter that shows its previous time keeps the one it showed), and dot files
  (locks, temporary folders of runs in flight).
"""
from __future__ import annotations

import hashlib
import os
import sys
from importlib import metadata
from pathlib import Path

from ..config import canonical_json
from ..paths import REPO_ROOT
from ..results import ResultsFolder

SOURCES = (REPO_ROOT / "kdlib", REPO_ROOT / "notebooks")


def _files(root: Path, skip_top: tuple[str, ...] = ()):
    """Every file under `root` but dot files and dot folders, in a fixed order, as (relative path, stat)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if name.startswith(".") or (folder == str(root) and name in skip_top):
                continue
            path = Path(folder) / name
            yield path.relative_to(root).as_posix(), path.stat()


def code_digest() -> str:
    from ..provenance import code_version

    h = hashlib.sha256(code_version().encode())
    for root in SOURCES:
        for rel, _ in _files(root):
            if rel.endswith(".py"):
                h.update(f"\0{root.name}/{rel}\0".encode())
                h.update((root / rel).read_bytes())
    return h.hexdigest()


def environment_digest() -> str:
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"])
    return hashlib.sha256("\n".join([sys.version, *packages]).encode()).hexdigest()


def folder_digest(root: Path, skip_top: tuple[str, ...] = ()) -> str:
    """Path, size and modification time of every file under a folder (a missing folder has a digest too)."""
    h = hashlib.sha256(str(Path(root).resolve()).encode())
    if Path(root).is_dir():
        for rel, st in _files(Path(root), skip_top):
            h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def build_digest(study, folders: list[ResultsFolder], reports: Path) -> str:
    """The part of every chapter's digest that this build shares: code, study file, packages, data."""
    parts = [code_digest(), hashlib.sha256(Path(study.path).read_bytes()).hexdigest(), environment_digest(),
             folder_digest(reports)]
    parts += sorted(folder_digest(f.root, (ResultsFolder.DRIVER_LOG,)) for f in folders)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def chapter_digest(build: str, chapter: str, params: dict, title: str, meta: dict) -> str:
    return hashlib.sha256(canonical_json([build, chapter, params, title, meta]).encode()).hexdigest()[:32]


def reusable(recorded: dict, digest: str) -> bool:
    """An executed chapter's metadata (`chapter_metadata`) says it was executed from exactly these inputs."""
    return bool(recorded) and recorded.get("inputs") == digest
