"""The training phase on a Ray cluster: one task per run, a student task depends on its teacher's task
(Ray passes the teacher's record, logits and weights included, through its object store), each task asks
for the resources its setup declares, and a worker that dies is retried. Finished runs come back to the
driver, which writes them into the run store (no shared filesystem needed); with `shared_fs` the workers
write into the store themselves.

    python -m kdlib.driver --scale smoke --executor ray                     # a local Ray cluster
    RAY_ADDRESS=auto python -m kdlib.driver --scale paper --executor ray    # an existing one
    python -m kdlib.driver --scale paper --executor ray --address ray://head:10001
"""
from __future__ import annotations

import os
import time
import traceback
from typing import Optional

from .jobs import Job, Report, job_tree, to_train
from .progress import POLL_SECONDS, ProgressBar, drain_epochs
from .store import StoreUnwritable

MAX_RETRIES = 3  # a task whose worker process dies is run again (system failures only, not exceptions)
START_ATTEMPTS = 3  # a local cluster whose raylet did not register in time is started again
# Ray's own message when the raylet has not registered with the GCS within its fixed 30 s (ray/_private/node.py):
# on a machine busy with other work this is load, not a broken installation
_STARTUP_TIMEOUT = "timed out during startup"


def start_local(num_cpus: Optional[int] = None, attempts: int = START_ATTEMPTS, log=print):
    """Start a local Ray cluster, starting it again (after shutting the half-started one down) when Ray gives
    up waiting for its raylet, up to `attempts` times; any other error is raised at once."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            return ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        except Exception as e:
            if _STARTUP_TIMEOUT not in str(e):
                raise  # e.g. a cluster already running here: left as it is
            ray.shutdown()  # the half-started one
            if attempt == attempts:
                raise
            log(f"the local Ray cluster did not start (attempt {attempt} of {attempts}: {e}); starting it again")


def _task(cfg, teacher, device: str, store_root: Optional[str], feed=None):
    """Runs on a Ray worker: train one run (given its teacher's record or artifacts) and return its record;
    each epoch trained goes to `feed` (a Ray queue) as (run hash, epoch, epochs)."""
    from .runner import RunRecord, execute_run
    from .store import RunStore

    if isinstance(teacher, RunRecord):
        teacher = teacher.teacher_artifacts()
    on_epoch = None if feed is None else (lambda epoch, epochs: feed.put((cfg.hash, epoch, epochs)))
    started = time.perf_counter()
    record = execute_run(cfg, device, teacher, on_epoch=on_epoch)
    record.provenance["wall_seconds"] = round(time.perf_counter() - started, 3)
    record.provenance["executor"] = f"ray (node {os.uname().nodename})"
    if store_root is not None:  # a shared filesystem: write here (under the run's lock), the driver only counts
        record.provenance["stored_here"] = RunStore(store_root).write_once(record)
    if cfg.arm != "teacher":  # students' records need not travel with training logits or weights
        record.train_logits = record.model_state = None
    return record


def task_options(job: Job, device: str) -> dict:
    """Ray resources for one run: what the setup declares (e.g. num_gpus 0.25 for a small model), one CPU
    per run on the CPU (runs use a fixed number of threads, so results do not depend on the packing)."""
    from .train import CPU_THREADS

    res = dict(job.resources or {})
    if device.startswith("cuda") or (device == "auto" and res.get("num_gpus")):
        return {"num_gpus": res.get("num_gpus", 1), "num_cpus": res.get("num_cpus", 1)}
    return {"num_cpus": res.get("num_cpus", CPU_THREADS), "num_gpus": 0}


class RayExecutor:
    def __init__(self, device: str = "auto", address: Optional[str] = None, shared_fs: bool = False,
                 num_cpus: Optional[int] = None):
        self.device, self.address, self.shared_fs, self.num_cpus = device, address, shared_fs, num_cpus

    def _init(self):
        import ray

        if ray.is_initialized():
            return ray
        if self.address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=self.address or os.environ["RAY_ADDRESS"], log_to_driver=False)
        else:
            start_local(self.num_cpus)
        return ray

    def run(self, jobs: list[Job], store) -> Report:
        from .runner import TeacherArtifacts, teacher_needs

        ray = self._init()
        from ray.util.queue import Queue

        task = ray.remote(_task)
        report, started = Report(total=len(jobs)), time.perf_counter()
        todo = to_train(jobs, store, report)
        roots, children = job_tree(todo)
        store_root = str(store.root) if self.shared_fs else None
        refs, by_ref, t0 = {}, {}, {}
        # epochs come back through a queue actor that holds no CPU; its put returns once the item is queued,
        # so a run's last epoch is there to read by the time its result is
        feed = Queue(actor_options={"num_cpus": 0})

        def submit(job, teacher):
            ref = task.options(max_retries=MAX_RETRIES, **task_options(job, self.device)).remote(
                job.cfg, teacher, self.device, store_root, feed)
            refs[job.cfg.hash], by_ref[ref] = ref, job
            t0[job.cfg.hash] = time.perf_counter()

        def submit_tree(job, teacher):
            submit(job, teacher)
            for child in children.get(job.cfg.hash, []):
                submit_tree(child, refs[job.cfg.hash])  # a dependency on the teacher's task, not polling

        for job in roots:
            teacher = None
            if job.cfg.is_student:  # its teacher is already in the store: send what the student needs
                need_logits, need_model = teacher_needs(job.cfg)
                teacher = ray.put(TeacherArtifacts.from_store(store, job.cfg.teacher_hash, need_logits, need_model))
            submit_tree(job, teacher)

        bar = ProgressBar(len(todo))
        pending = list(by_ref)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        try:
            while pending:
                bar.update(running=min(len(pending), slots))
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                drain_epochs(feed, bar)
                for ref in ready:
                    job = by_ref[ref]
                    bar.ended(job.cfg.hash)  # a task retried after its worker died reports its epochs again
                    try:
                        record = ray.get(ref)
                    except Exception as e:  # the run raised, or its teacher did
                        if isinstance(getattr(e, "cause", None), StoreUnwritable):
                            raise e.cause from None  # a worker could not write (--shared-fs): nor can the rest
                        report.fail(job, "its teacher failed" if report.teacher_failed(job) else _describe(e))
                        bar.update(failed=1)
                        continue
                    # under the run's lock, as the local executor trains: a run another driver stored meanwhile
                    # is counted as found, not as trained (its record is dropped)
                    stored = record.provenance.pop("stored_here", None) if self.shared_fs else store.write_once(record)
                    if not stored:
                        report.found(job)
                        bar.update(done=1)
                        continue
                    report.done(job, record.provenance.get("seconds", time.perf_counter() - t0[job.cfg.hash]))
                    bar.update(done=1)
        finally:
            bar.close()
            feed.shutdown(force=True)
            report.seconds = time.perf_counter() - started
        return report


def _describe(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__, limit=3)) if cause else str(e)
    return text.strip() or repr(e)
