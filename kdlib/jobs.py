"""The training phase's bookkeeping, shared by every executor: the jobs of a plan (one per distinct run),
the tree they form (a student after its seed's teacher), and the report of what was trained, found or
failed. No training code: an executor imports this, never the other way round."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from .config import RunConfig, SetupConfig
from .progress import fmt_seconds


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


def job_tree(jobs: list[Job]) -> tuple[list[Job], dict[str, list[Job]]]:
    """Roots (teachers, or students whose teacher is not among the jobs) and the students of each teacher."""
    hashes = {j.cfg.hash for j in jobs}
    roots, children = [], defaultdict(list)
    for j in jobs:
        if j.cfg.is_student and j.cfg.teacher_hash in hashes:
            children[j.cfg.teacher_hash].append(j)
        else:
            roots.append(j)
    return roots, children


def descendants(job: Job, children: dict[str, list[Job]]) -> list[Job]:
    """The students of a job, their students, and so on: they fail with it, or are skipped with it."""
    out = []
    for c in children.get(job.cfg.hash, []):
        out += [c] + descendants(c, children)
    return out


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
        """In the store already, or stored by another process (a second driver) while this one waited."""
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


def to_train(jobs: list[Job], store, report: Report) -> list[Job]:
    """The jobs not in the store yet; the others are counted in the report as found."""
    todo = []
    for j in jobs:
        if store.has(j.cfg):
            report.found(j)
        else:
            todo.append(j)
    return todo
