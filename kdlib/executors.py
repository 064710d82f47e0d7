"""The training phase of a study: every run of a plan, de-duplicated by config hash, trained by an
executor into the run store. Executors:

    local  (default)  on this machine: a pool of `workers` worker processes that write into the store
                      themselves, or (`workers=1`) a pool of one that trains in this process; each run uses
                      a fixed number of threads, so results do not depend on the pool size
    ray               on a Ray cluster (`kdlib.executors_ray`): a local one, or an existing cluster

A student waits for its seed's teacher; a run that fails is recorded with its error and the others go
on (the students of a failed teacher fail with it); the report names every failed run. A write that
fails for the whole store (`StoreUnwritable`: disk full, read-only) stops the phase at once instead.
Each run trains under its lock in the store, so two drivers on one store train it once.
"""
from __future__ import annotations

import contextlib
import queue
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Optional

from .config import RunConfig, SetupConfig
from .jobs import Job, Report, collect_jobs, descendants, job_tree, to_train
from .progress import POLL_SECONDS, ProgressBar, drain_epochs
from .store import RunStore, StoreUnwritable

EXECUTORS = ("local", "ray")


def train_once(cfg: RunConfig, store: RunStore, device: str = "auto", on_epoch=None) -> bool:
    """Train and store one run under its lock; False when another process stored it meanwhile."""
    from .runner import run_and_store

    with store.lock(cfg):
        if store.has(cfg):
            return False
        run_and_store(cfg, store, device, on_epoch)
        return True


class TaskError(RuntimeError):
    """An error in a run, carrying its formatted traceback (which a worker process cannot send as such)."""

    def __init__(self, formatted: str):
        super().__init__(formatted.splitlines()[-1] if formatted else "error")
        self.formatted = formatted


def _task(cfg: RunConfig, store: RunStore | str, device: str, feed=None) -> bool:
    """One run, in this process (given the store) or in a worker process (given its folder); each epoch
    trained goes to `feed` (anything with `put`) as (run hash, epoch, epochs)."""
    on_epoch = None if feed is None else (lambda epoch, epochs: feed.put((cfg.hash, epoch, epochs)))
    try:
        return train_once(cfg, store if isinstance(store, RunStore) else RunStore(store), device, on_epoch)
    except StoreUnwritable:
        raise  # the executor stops the phase on it
    except Exception:  # recorded, and the rest go on (KeyboardInterrupt is not caught)
        raise TaskError(traceback.format_exc(limit=3)) from None


class InProcessPool:
    """A pool of one that runs each task when it is submitted, in this process: `workers=1` goes through the
    same scheduling as a process pool, and Ctrl-C reaches the run at once."""

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as e:
            fut.set_exception(e)
        return fut

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _process_pool(workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent)


def _manager():
    import multiprocessing as mp

    return mp.get_context("spawn").Manager()


def _die_with_parent() -> None:
    """Linux: a worker ends when the driver does (killed or not), instead of running on as an orphan."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_workers(pool) -> None:
    """Ctrl-C, SIGTERM or an unwritable store: cancel what has not started and end the worker processes now.
    A run cut short leaves only its temporary folder, which the next start of the store removes."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    manager = getattr(pool, "_executor_manager_thread", None)
    for proc in procs:
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.join(5)
        if proc.exitcode is None:  # SIGTERM ignored or blocked in the worker: SIGKILL cannot be
            proc.kill()
            proc.join(5)
    if manager is not None:
        # The pool's manager thread reaps the dead workers too; until it is done, a worker it reaped may not
        # show its exit code yet (multiprocessing.active_children() would still list it)
        manager.join(60)


class _ToBar:
    """The epoch feed of runs in this process: each report goes to the bar at once, none waits to be read."""

    def __init__(self, bar: ProgressBar):
        self.bar = bar

    def put(self, item) -> None:
        self.bar.epoch(*item)

    def get_nowait(self):
        raise queue.Empty


class LocalExecutor:
    def __init__(self, device: str = "auto", workers: int = 1):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.device, self.workers = device, workers

    def run(self, jobs: list[Job], store: RunStore, stop_at: Optional[float] = None) -> Report:
        """Train the jobs missing from the store. With `stop_at` (a time.perf_counter() value) no run
        starts after that time; the ones left are listed as skipped."""
        report, started = Report(total=len(jobs)), time.perf_counter()
        todo = to_train(jobs, store, report)
        bar = ProgressBar(len(todo))
        try:
            in_process = self.workers == 1 or len(todo) <= 1
            # worker processes report epochs through a manager's queue: its put returns once the item is
            # queued, so a run's last epoch is there to read by the time its result is
            with contextlib.nullcontext() if in_process else _manager() as manager, \
                    InProcessPool() if in_process else _process_pool(self.workers) as pool:
                feed = _ToBar(bar) if in_process else manager.Queue()
                try:
                    self._schedule(pool, todo, store if in_process else str(store.root), store, report, bar, stop_at,
                                   feed)
                except KeyboardInterrupt:
                    _stop_workers(pool)  # else leaving the `with` waits for the runs in flight (minutes)
                    raise
        finally:
            bar.close()
            report.seconds = time.perf_counter() - started
        return report

    def _schedule(self, pool, todo: list[Job], target: RunStore | str, store: RunStore, report: Report, bar,
                  stop_at: Optional[float], feed) -> None:
        """Depth first over the job tree: a teacher's students go before the next teacher, so seeds finish
        one after another (and a time limit leaves whole seeds, not a row of teachers)."""
        roots, children = job_tree(todo)
        ready, running = deque(roots), {}
        while ready or running:
            while ready and len(running) < self.workers:
                j = ready.popleft()
                if stop_at is not None and time.perf_counter() >= stop_at:
                    report.skipped += [j.cfg.label] + [c.cfg.label for c in descendants(j, children)]
                    continue
                running[pool.submit(_task, j.cfg, target, self.device, feed)] = j
            if not running:
                break
            bar.update(running=len(running))
            finished, _ = wait(list(running), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            drain_epochs(feed, bar)
            for fut in finished:
                j = running.pop(fut)
                bar.ended(j.cfg.hash)
                err = fut.exception()
                if isinstance(err, StoreUnwritable):
                    _stop_workers(pool)  # the runs in flight cannot be stored either: do not wait for them
                    raise err
                if err is None:
                    if fut.result():
                        report.done(j, store.provenance(j.cfg)["seconds"])
                    else:
                        report.found(j)
                    bar.update(done=1)
                    ready.extendleft(reversed(children.get(j.cfg.hash, [])))
                else:
                    failed = [j] + descendants(j, children)
                    message = getattr(err, "formatted", None) or repr(err)
                    for k, job in enumerate(failed):
                        report.fail(job, message if k == 0 else "its teacher failed")
                    bar.update(failed=len(failed))


def fill_missing(entry_id: str, cfg: SetupConfig, results, device: str = "auto") -> int:
    """Train the runs of one setup missing from a results folder (a chapter rerun with new parameters and
    `train_missing`); runs the last training phase reported as failed are not retried. Returns how many
    were trained."""
    from .train import resolve_device

    store = results.store()
    if not store.missing(cfg):
        return 0
    resolve_device(device or "auto")  # a bad device stops here, not in every run
    failed = results.failures()
    jobs = [j for j in collect_jobs([(entry_id, cfg)]) if j.cfg.label not in failed]
    return len(LocalExecutor(device or "auto").run(jobs, store).trained)


def make_executor(name: str, device: str = "auto", workers: int = 1, address: Optional[str] = None,
                  shared_fs: bool = False):
    if name == "local":
        return LocalExecutor(device, workers)
    if name == "ray":
        from .executors_ray import RayExecutor

        return RayExecutor(device=device, address=address, shared_fs=shared_fs,
                           num_cpus=workers if address is None else None)
    raise ValueError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
