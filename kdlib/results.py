"""A scale's results folder and everything in it, known in one place:

    <results>/runs/                the run store (`kdlib.store.RunStore`)
    <results>/failed_runs.json     the runs the last training phase could not train (label -> error)
    <results>/training_log.json    one record per training phase, oldest first
    <results>/driver_log.json      the last build's chapter timings, failed chapters and notes

Both wings use it: the training phase writes failures and the training log, the book reads them.
Each training phase says when and where it ran, with which code, and per plan entry how many runs it
trained and their seconds of training, so an entry's cost can be read back after phases of other entries
(a shipped store is trained entry by entry, possibly over several sessions). A phase writes a start record
first and replaces it when it ends, both under a lock (`.training_log.lock`), so a phase killed outright
(kill -9) or stopped by a full disk leaves its start record: the next phase counts that phase's runs from
the store (each run's provenance says when it finished) and closes the record, saying how it ended.
"""
from __future__ import annotations

import bisect
import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

from .paths import from_root
from .store import RunStore


class ResultsFolder:
    FAILURES = "failed_runs.json"
    TRAINING_LOG = "training_log.json"
    DRIVER_LOG = "driver_log.json"
    REPLICATIONS = "replications.json"

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

    # ------------------------------------------------------------------ replications (`--compare-with --record`)
    def replications(self) -> dict:
        """entry id -> the comparison of its runs with those of another store (written by `compare.compare_stores`)."""
        path = self.root / self.REPLICATIONS
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_replication(self, entry_id: str, record: dict) -> None:
        """Record (or replace) one entry's comparison; the other entries' records stay."""
        with self._log_lock():
            records = self.replications()
            records[entry_id] = record
            _write_json(self.root / self.REPLICATIONS, dict(sorted(records.items())))

    # ------------------------------------------------------------------ logs
    def training_log(self) -> dict:
        """{"phases": [...]}; empty if there is none. A log from before phases were kept (one flat phase,
        naming no entries) reads as that one phase."""
        path = self.root / self.TRAINING_LOG
        if not path.is_file():
            return {"phases": []}
        log = json.loads(path.read_text())
        return log if "phases" in log else {"phases": [log]}

    @contextlib.contextmanager
    def _log_lock(self):
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".training_log.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append_training_phase(self, phase: dict) -> None:
        with self._log_lock():
            log = self.training_log()
            log["phases"].append(phase)
            _write_json(self.root / self.TRAINING_LOG, log)

    def start_training_phase(self, record: dict, planned: dict) -> str:
        """Log a phase's start before it trains (`planned`: entry -> hashes of the runs it is to train), after
        closing the records of earlier phases that ended without one. Returns the phase's id."""
        phase_id = uuid.uuid4().hex[:12]
        with self._log_lock():
            log = self.training_log()
            self._close_dead_phases(log)
            log["phases"].append({**record, "id": phase_id, "status": "running", "host": socket.gethostname(),
                                  "pid": os.getpid(), "planned": planned, "entries": {}, "runs_trained": 0})
            _write_json(self.root / self.TRAINING_LOG, log)
        return phase_id

    def finish_training_phase(self, phase_id: str, phase: dict) -> None:
        """Replace the phase's start record by what it did."""
        with self._log_lock():
            log = self.training_log()
            for i, p in enumerate(log["phases"]):
                if p.get("id") == phase_id:
                    log["phases"][i] = {**phase, "id": phase_id}
                    break
            else:
                log["phases"].append({**phase, "id": phase_id})
            _write_json(self.root / self.TRAINING_LOG, log)

    def _close_dead_phases(self, log: dict) -> None:
        """Start records of this machine's phases whose process is gone: ended without a final record. Their
        runs are counted from the store: the planned runs stored since the phase began (each run's provenance
        has its finishing time)."""
        from .store import pid_alive

        store = self.existing_store()
        for i, p in enumerate(log["phases"]):
            if p.get("status") != "running" or p.get("host") != socket.gethostname() or pid_alive(int(p.get("pid", 0))):
                continue
            began = _ts(p["started"])
            entries, trained, last = {}, set(), began
            for entry, hashes in (p.get("planned") or {}).items():
                d = {"runs": len(hashes), "trained": 0, "failed": 0, "seconds": 0.0}
                for h in hashes:
                    prov = _provenance(store, h)
                    at = _ts(prov.get("finished_at")) if prov.get("finished_at") else None
                    if at is not None and at >= began:
                        d["trained"] += 1
                        d["seconds"] += float(prov.get("seconds", 0.0))
                        trained.add(h)
                        last = max(last, at)
                entries[entry] = {k: round(v, 1) if isinstance(v, float) else v for k, v in d.items()}
            closed = {k: v for k, v in p.items() if k not in ("status", "planned", "pid", "host")}
            closed.update({"entries": entries, "runs_trained": len(trained),
                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(last)),
                           "wall_seconds": round(last - began, 1),
                           "interrupted": "ended without its final record (killed outright, or the disk filled); "
                                          "its runs were counted from the store when the next phase began, its wall "
                                          "time is up to its last stored run"})
            log["phases"][i] = closed

    def entry_phases(self, entry_id: str, finished: Optional[Iterable[str]] = None) -> list[dict]:
        """The phases that trained runs of one plan entry (a phase naming no entries counts for all). Given
        the `finished_at` stamps of the entry's stored runs, only the phases during which one of them
        finished: an entry whose runs were replaced (its config changed, the old runs deleted) keeps its old
        phases in the log, as history, but not in what its stored runs cost."""
        phases = [p for p in self.training_log()["phases"]
                  if "entries" not in p or p["entries"].get(entry_id, {}).get("trained")]
        if finished is None:
            return phases
        times = sorted(_ts(t) for t in finished if t)

        def trained_one(p):
            if not p.get("started"):  # the older flat log: no times to tell by
                return bool(times)
            start = _ts(p["started"])
            end = _ts(p["finished"]) if p.get("finished") else float("inf")
            i = bisect.bisect_left(times, start)
            return i < len(times) and times[i] <= end
        return [p for p in phases if trained_one(p)]

    def entry_cost(self, entry_id: str, finished: Optional[Iterable[str]] = None) -> dict:
        """Runs trained, seconds of training and wall time (the phases' wall time, where a phase trained this
        entry alone) of one entry over its phases (`entry_phases`, with `finished`), with the phases' notes (a
        phase that shared the machine with other work, or was interrupted, says so: its wall time is not the
        entry's cost alone)."""
        phases = [p for p in self.entry_phases(entry_id, finished) if "entries" in p]
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



def _ts(stamp: str) -> float:
    """Seconds since the epoch of a stamp like 2026-12-06T14:13:50+0000."""
    from datetime import datetime

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def _provenance(store, h: str) -> dict:
    from .store import StoreError

    try:
        return store.provenance(h) if store is not None and store.has(h) else {}
    except StoreError:
        return {}
