"""The training phase of a study: every run of a plan, de-duplicated by config hash, trained by an
executor into the run store. Executors:

    local  (default)  on this machine: in this process (`workers=1`), or a pool of worker processes that
                      write into the store themselves (`workers>1`; each run uses a fixed number of
                      threads, so results do not depend on the pool size)
    ray               on a Ray cluster (`kdlib.executors_ray`): a local one, or an existing cluster

A student waits for its seed's teacher; a run that fails is recorded with its error and the others go
on (the students of a failed teacher fail with it); the report names every failed run. A write that
fails for the whole store (`StoreUnwritable`: disk full, read-only) stops the phase at once instead.
Each run trains under its lock in the store, so two drivers on one store train it once.
"""
from __future__ import annotations

import json
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from .config import RunConfig, SetupConfig
from .progress import ProgressBar, fmt_seconds
from .store import StoreUnwritable

EXECUTORS = ("local", "ray")


@dataclass
class Job:
    """One distinct run of a plan and the plan entries that use it."""

    cfg: RunConfig
    entries: list = field(default_factory=list)
    resources: dict = field(default_factory=dict)


def collect_jobs(setups: Iterable[tuple[str, SetupConfig]]) -> list[Job]:
    """Every run of the given (entry id, setup) pairs, once per config hash, teachers before students."""
    jobs: dict[str, Job] = {}
    for entry_id, setup in setups:
        for cfg in setup.runs():
            job = jobs.setdefault(cfg.hash, Job(cfg, resources=dict(setup.resources)))
            if entry_id not in job.entries:
                job.entries.append(entry_id)
    return list(jobs.values())


@dataclass
class Report:
    """What an executor did: runs trained now, found in the store, failed (label -> error)."""

    total: int = 0
    trained: list = field(default_factory=list)
    loaded: int = 0
    skipped: list = field(default_factory=list)  # not started before the time limit
    failed: dict = field(default_factory=dict)
    seconds: float = 0.0
    per_entry: dict = field(default_factory=lambda: defaultdict(lambda: {"runs": 0, "trained": 0, "failed": 0,
                                                                         "seconds": 0.0}))

    failed_hashes: set = field(default_factory=set)  # so the students of a failed teacher fail with it

    def note(self, job: Job, status: str, seconds: float = 0.0) -> None:
        for e in job.entries:
            d = self.per_entry[e]
            d["runs"] += 1
            d[status] = d.get(status, 0) + 1
            d["seconds"] += seconds

    def done(self, job: Job, seconds: float) -> None:
        self.trained.append(job.cfg.label)
        self.note(job, "trained", seconds)

    def found(self, job: Job) -> None:
        """Stored by another process (a second driver on the store) while this one waited for its lock."""
        self.loaded += 1
        self.note(job, "loaded")

    def fail(self, job: Job, error: str) -> None:
        self.failed[job.cfg.label] = error
        self.failed_hashes.add(job.cfg.hash)
        self.note(job, "failed")

    def teacher_failed(self, job: Job) -> bool:
        return job.cfg.is_student and job.cfg.teacher_hash in self.failed_hashes

    def summary_lines(self) -> list[str]:
        lines = [f"training phase: {self.total} distinct runs, {len(self.trained)} trained, {self.loaded} already "
                 f"in the store, {len(self.failed)} failed, {fmt_seconds(self.seconds)}"
                 + (f", {len(self.skipped)} not started before the time limit" if self.skipped else "")]
        for e, d in self.per_entry.items():
            lines.append(f"  {e}: {d['runs']} runs, {d['trained']} trained ({d['seconds']:.1f} s of training), "
                         f"{d['failed']} failed")
        for label, err in self.failed.items():
            lines.append(f"  FAILED {label}: {err.splitlines()[-1] if err else ''}")
        return lines


def write_failures(results_dir: Path, report: Report) -> None:
    """The failed runs of the last training phase, for the chapters (which list them as failed)."""
    path = Path(results_dir) / "failed_runs.json"
    if report.failed:
        path.write_text(json.dumps(report.failed, indent=1))
    elif path.exists():
        path.unlink()


def train_once(cfg: RunConfig, store, device: str = "auto", progress=None) -> bool:
    """Train and store one run under its lock; False when another process stored it meanwhile."""
    from .runner import run_and_store

    with store.lock(cfg):
        if store.has(cfg):
            return False
        run_and_store(cfg, store, device, progress=progress)
        return True


def to_train(jobs: list[Job], store, report: Report) -> list[Job]:
    """The jobs not in the store yet; the others are counted in the report as loaded."""
    todo = []
    for j in jobs:
        if store.has(j.cfg):
            report.loaded += 1
            report.note(j, "loaded")
        else:
            todo.append(j)
    return todo


def _order(jobs: list[Job]) -> tuple[list[Job], dict[str, list[Job]]]:
    """Roots (teachers, or students whose teacher is not part of this plan) and the students of each teacher."""
    hashes = {j.cfg.hash for j in jobs}
    roots, children = [], defaultdict(list)
    for j in jobs:
        if j.cfg.is_student and j.cfg.teacher_hash in hashes:
            children[j.cfg.teacher_hash].append(j)
        else:
            roots.append(j)
    return roots, children


class LocalExecutor:
    def __init__(self, device: str = "auto", workers: int = 1, progress_stream=None,
                 run_progress: Optional[Callable[[str], None]] = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.device, self.workers, self.stream, self.run_progress = device, workers, progress_stream, run_progress

    def run(self, jobs: list[Job], store, stop_at: Optional[float] = None) -> Report:
        """Train the jobs missing from the store. With `stop_at` (a time.perf_counter() value) no run
        starts after that time; the ones left are listed as skipped."""
        report, started = Report(total=len(jobs)), time.perf_counter()
        todo = to_train(jobs, store, report)
        bar = ProgressBar(len(todo), stream=self.stream)
        try:
            if self.workers == 1 or len(todo) <= 1:
                for j in todo:
                    if stop_at is not None and time.perf_counter() >= stop_at:
                        report.skipped.append(j.cfg.label)
                        continue
                    if report.teacher_failed(j):
                        report.fail(j, "its teacher failed")
                        bar.update(failed=1)
                        continue
                    bar.update(running=1)
                    t0 = time.perf_counter()
                    try:
                        trained = train_once(j.cfg, store, self.device, progress=self.run_progress)
                    except StoreUnwritable:
                        raise  # the next run could not be written either
                    except Exception:  # recorded, and the rest go on (KeyboardInterrupt is not caught)
                        report.fail(j, traceback.format_exc(limit=3))
                        bar.update(failed=1)
                        continue
                    if trained:
                        report.done(j, time.perf_counter() - t0)
                    else:
                        report.found(j)
                    bar.update(done=1, running=0)
            else:
                self._pool(todo, store, report, bar, stop_at)
        finally:
            bar.close()
            report.seconds = time.perf_counter() - started
        return report

    def _pool(self, todo, store, report, bar, stop_at=None):
        """A DAG over a process pool, depth first: a teacher's students go before the next teacher, so
        seeds finish one after another (and a time limit leaves whole seeds, not a row of teachers)."""
        import multiprocessing as mp
        from collections import deque
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        roots, children = _order(todo)
        ready = deque(roots)
        with ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent) as pool:
            running = {}
            while ready or running:
                while ready and len(running) < self.workers:
                    j = ready.popleft()
                    if stop_at is not None and time.perf_counter() >= stop_at:
                        report.skipped += [j.cfg.label] + [c.cfg.label for c in _descendants(j, children)]
                        continue
                    running[pool.submit(_pool_task, j.cfg, str(store.root), self.device)] = (j, time.perf_counter())
                if not running:
                    break
                bar.update(running=len(running))
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    j, t0 = running.pop(fut)
                    err = fut.exception()
                    if isinstance(err, StoreUnwritable):
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise err
                    err = err if err is None else getattr(err, "formatted", repr(err))
                    if err is None:
                        if fut.result():
                            report.done(j, store.provenance(j.cfg)["seconds"])
                        else:
                            report.found(j)
                        bar.update(done=1)
                        ready.extendleft(reversed(children.get(j.cfg.hash, [])))
                    else:
                        failed = [j] + _descendants(j, children)
                        for k, job in enumerate(failed):
                            report.fail(job, err if k == 0 else "its teacher failed")
                        bar.update(failed=len(failed))


def _descendants(job, children) -> list:
    out = []
    for c in children.get(job.cfg.hash, []):
        out += [c] + _descendants(c, children)
    return out


class TaskError(RuntimeError):
    """An error in a worker, carrying its formatted traceback."""

    def __init__(self, formatted: str):
        super().__init__(formatted.splitlines()[-1] if formatted else "error")
        self.formatted = formatted


def _die_with_parent() -> None:
    """Linux: a worker ends when the driver does (killed or not), instead of running on as an orphan."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pool_task(cfg: RunConfig, store_root: str, device: str) -> bool:
    from .store import RunStore

    try:
        return train_once(cfg, RunStore(store_root), device)
    except StoreUnwritable:
        raise  # the driver stops the phase on it
    except Exception:
        raise TaskError(traceback.format_exc(limit=3)) from None


def make_executor(name: str, device: str = "auto", workers: int = 1, address: Optional[str] = None,
                  shared_fs: bool = False, progress_stream=None):
    if name == "local":
        return LocalExecutor(device, workers, progress_stream)
    if name == "ray":
        from .executors_ray import RayExecutor

        return RayExecutor(device=device, address=address, shared_fs=shared_fs, progress_stream=progress_stream,
                           num_cpus=workers if address is None else None)
    raise ValueError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
