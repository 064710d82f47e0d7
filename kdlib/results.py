"""A scale's results folder and everything in it, known in one place:

    <results>/runs/                the run store (`kdlib.store.RunStore`)
    <results>/failed_runs.json     the runs the last training phase could not train (label -> error)
    <results>/training_log.json    one record per training phase, oldest first
    <results>/driver_log.json      the last build's chapter timings, failed chapters and notes

Both wings use it: the training phase writes failures and the training log, the book reads them.
Each training phase says when and where it ran, with which code, and per plan entry how many runs it
trained and their seconds of training, so an entry's cost can be read back after phases of other entries
(a shipped store is trained entry by entry, possibly over several sessions).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from .paths import from_root
from .store import RunStore


class ResultsFolder:
    FAILURES = "failed_runs.json"
    TRAINING_LOG = "training_log.json"
    DRIVER_LOG = "driver_log.json"

    def __init__(self, root: str | os.PathLike):
        self.root = from_root(root)  # relative paths from the repository root

    @classmethod
    def of(cls, study, scale: str, override: Optional[str | os.PathLike] = None) -> "ResultsFolder":
        """The folder a scale's runs live in: `override` (a --results or a chapter's `results_dir`) if given,
        else the one the study file names for the scale."""
        return cls(override or study.results_dir(scale))

    def __repr__(self) -> str:
        return f"ResultsFolder({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ResultsFolder) and self.root == other.root

    # ------------------------------------------------------------------ the run store
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def store(self) -> RunStore:
        """The run store, created if there is none (for a phase that trains, or a chapter allowed to)."""
        return RunStore(self.runs_dir)

    def existing_store(self) -> Optional[RunStore]:
        """The run store if the folder has one, else None: a reader creates no folders."""
        return RunStore(self.runs_dir) if self.runs_dir.is_dir() else None

    # ------------------------------------------------------------------ failures of the last training phase
    def failures(self) -> dict:
        path = self.root / self.FAILURES
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_failures(self, failed: dict) -> None:
        """Replace the failures with this phase's (none: the file is removed)."""
        path = self.root / self.FAILURES
        if failed:
            _write_json(path, failed)
        elif path.exists():
            path.unlink()

    # ------------------------------------------------------------------ logs
    def training_log(self) -> dict:
        """{"phases": [...]}; empty if there is none. A log from before phases were kept (one flat phase,
        naming no entries) reads as that one phase."""
        path = self.root / self.TRAINING_LOG
        if not path.is_file():
            return {"phases": []}
        log = json.loads(path.read_text())
        return log if "phases" in log else {"phases": [log]}

    def append_training_phase(self, phase: dict) -> None:
        log = self.training_log()
        log["phases"].append(phase)
        _write_json(self.root / self.TRAINING_LOG, log)

    def entry_phases(self, entry_id: str) -> list[dict]:
        """The phases that trained runs of one plan entry (a phase naming no entries counts for all)."""
        return [p for p in self.training_log()["phases"]
                if "entries" not in p or p["entries"].get(entry_id, {}).get("trained")]

    def entry_cost(self, entry_id: str) -> dict:
        """Runs trained, seconds of training and wall time (the phases' wall time, where a phase trained this
        entry alone) of one entry over every phase of the log, with the phases' notes (a phase that shared
        the machine with other work, or was interrupted, says so: its wall time is not the entry's cost alone)."""
        phases = [p for p in self.entry_phases(entry_id) if "entries" in p]
        runs = sum(p["entries"][entry_id]["trained"] for p in phases)
        seconds = sum(p["entries"][entry_id]["seconds"] for p in phases)
        alone = [p for p in phases if set(p["entries"]) == {entry_id}]
        wall = sum(p["wall_seconds"] for p in alone) if alone and len(alone) == len(phases) else None
        notes = [n for p in phases for n in (p.get("note"), p.get("interrupted")) if n]
        return {"runs": runs, "train_seconds": round(seconds, 1), "wall_seconds": wall, "phases": len(phases),
                "notes": notes}

    def write_driver_log(self, log: dict) -> None:
        _write_json(self.root / self.DRIVER_LOG, log)


def _write_json(path: Path, obj) -> None:
    """Temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)
