"""Whether a chapter must be executed again: an executed chapter records a digest of everything its output
can depend on, and a later build with the same digest reuses it instead of running its kernel again (a
rebuild that trained nothing then takes the book build's seconds, not the chapters' minutes).

The digest is deliberately wide, so that a reused page can never show what the inputs no longer say:
- the chapter's notebook, its parameters, title and book metadata;
- the code: `git describe` with its dirty mark (the appendix prints it) and the bytes of every source file
  of `kdlib/` and `notebooks/` (an uncommitted edit changes them, not the mark);
- the study file's bytes, the Python version and every installed package's version;
- the runs (path, size, modification time of every file) and the GPU check reports the run plan reads: for
  a book chapter (claims, regime, appendix, ...) every file of every results folder the book reads; for a
  setup chapter, which reads one entry of one store, every file of the entry's runs (a run not there yet
  counts as absent), the store's own files (its seal), the folder's files outside the store but the logs (the
  failed runs' list) and the training log's phases that trained the entry, so that runs trained for another
  entry leave it alone. Left out: the driver's own log, which the book phase rewrites at every build (a
  chapter that shows its previous time keeps the one it showed), and dot files (locks, temporary folders of
  runs in flight).
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from ..config import canonical_json
from ..paths import REPO_ROOT
from ..results import ResultsFolder

SOURCES = (REPO_ROOT / "kdlib", REPO_ROOT / "notebooks")


def _files(root: Path, skip_top: tuple[str, ...] = ()):
    """Every file under `root` but dot files and dot folders, in a fixed order, as (relative path, stat);
    `skip_top`: names of files or folders directly under `root` to leave out."""
    for folder, dirs, files in os.walk(root):
        top = folder == str(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__" and not (top and d in skip_top))
        for name in sorted(files):
            if name.startswith(".") or (top and name in skip_top):
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


def _stat_files(h, root: Path, skip_top: tuple[str, ...] = (), prefix: str = "") -> None:
    for rel, st in _files(root, skip_top):
        h.update(f"\0{prefix}{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())


def folder_digest(root: Path, skip_top: tuple[str, ...] = ()) -> str:
    """Path, size and modification time of every file under a folder (a missing folder has a digest too)."""
    h = hashlib.sha256(str(Path(root).resolve()).encode())
    if Path(root).is_dir():
        _stat_files(h, Path(root), skip_top)
    return h.hexdigest()


def entry_digest(folder: ResultsFolder, entry_id: str, run_hashes: Iterable[str]) -> str:
    """What a setup chapter reads of its results folder (`SetupView`): every file of each of the entry's runs
    (a run not stored yet marked as absent), the store's own files (its seal), every file of the folder outside
    the run store but the logs (the failed runs' list), and of the training log, which every training phase
    rewrites, the phases that trained this entry (`entry_phases`, the chapter's "Trained in ..." line)."""
    root, runs = Path(folder.root), Path(folder.runs_dir)
    h = hashlib.sha256(str(root.resolve()).encode())
    if root.is_dir():
        _stat_files(h, root, (ResultsFolder.DRIVER_LOG, ResultsFolder.TRAINING_LOG, runs.name))
        h.update(canonical_json(folder.entry_phases(entry_id)).encode())
    if runs.is_dir():
        for name in sorted(os.listdir(runs)):
            if not name.startswith(".") and (runs / name).is_file():
                st = (runs / name).stat()
                h.update(f"\0{runs.name}/{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    for run in sorted(set(run_hashes)):
        h.update(f"\0run {run}\0".encode())
        if (runs / run).is_dir():
            _stat_files(h, runs / run, prefix=f"{runs.name}/{run}/")
        else:
            h.update(b"absent")
    return h.hexdigest()


def shared_digest(study, reports: Path) -> str:
    """The part of every chapter's digest that this build shares: code, study file, packages, GPU reports."""
    parts = [code_digest(), hashlib.sha256(Path(study.path).read_bytes()).hexdigest(), environment_digest(),
             folder_digest(reports)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def with_data(shared: str, *data: str) -> str:
    """A build's shared digest with the digests of the data a chapter reads (folder or entry digests)."""
    return hashlib.sha256("\n".join([shared, *sorted(data)]).encode()).hexdigest()


def book_digest(shared: str, folders: list[ResultsFolder]) -> str:
    """A book chapter's data: every results folder the book reads, whole."""
    return with_data(shared, *(folder_digest(f.root, (ResultsFolder.DRIVER_LOG,)) for f in folders))


def chapter_digest(build: str, chapter: str, params: dict, title: str, meta: dict) -> str:
    return hashlib.sha256(canonical_json([build, chapter, params, title, meta]).encode()).hexdigest()[:32]


def reusable(recorded: dict, digest: str) -> bool:
    """An executed chapter's metadata (`chapter_metadata`) says it was executed from exactly these inputs."""
    return bool(recorded) and recorded.get("inputs") == digest
