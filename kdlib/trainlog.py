"""A results folder's training log (`training_log.json`): one record per training phase, oldest first.

Each phase says when and where it ran, with which code, and per plan entry how many runs it trained and
their seconds of training, so an entry's cost can be read back after phases of other entries (a shipped
store is trained entry by entry, possibly over several sessions).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

NAME = "training_log.json"


def read_log(results: str | os.PathLike) -> dict:
    """{"phases": [...]}; empty if there is none. A log from before phases were kept (one flat phase,
    naming no entries) reads as that one phase."""
    path = Path(results) / NAME
    if not path.is_file():
        return {"phases": []}
    log = json.loads(path.read_text())
    return log if "phases" in log else {"phases": [log]}


def append_phase(results: str | os.PathLike, phase: dict) -> None:
    """Add a phase, written to a temporary file and renamed: a reader never sees half a log."""
    results = Path(results)
    log = read_log(results)
    log["phases"].append(phase)
    tmp = results / f".{NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(log, indent=1))
    tmp.replace(results / NAME)


def entry_phases(results: str | os.PathLike, entry_id: str) -> list[dict]:
    """The phases that trained runs of one plan entry (a phase naming no entries counts for all)."""
    return [p for p in read_log(results)["phases"]
            if "entries" not in p or p["entries"].get(entry_id, {}).get("trained")]


def entry_cost(results: str | os.PathLike, entry_id: str) -> dict:
    """Runs trained, seconds of training and wall time (the phases' wall time, where a phase trained this
    entry alone) of one entry over every phase of the log."""
    phases = [p for p in entry_phases(results, entry_id) if "entries" in p]
    runs = sum(p["entries"][entry_id]["trained"] for p in phases)
    seconds = sum(p["entries"][entry_id]["seconds"] for p in phases)
    alone = [p for p in phases if set(p["entries"]) == {entry_id}]
    wall = sum(p["wall_seconds"] for p in alone) if alone and len(alone) == len(phases) else None
    return {"runs": runs, "train_seconds": round(seconds, 1), "wall_seconds": wall, "phases": len(phases)}
