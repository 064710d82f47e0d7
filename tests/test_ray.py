"""The Ray executor on a local two-CPU cluster: the same numbers as the local executor run for run, a
killed worker retried with every run written exactly once, a failing run reported without stopping the
others, workers writing into a shared store themselves, and every epoch of every run on the progress line."""
import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from kdlib import load_study  # noqa: E402
from kdlib.executors import LocalExecutor  # noqa: E402
from kdlib.jobs import collect_jobs
from kdlib.executors_ray import RayExecutor, start_local  # noqa: E402
from kdlib.store import RunStore  # noqa: E402
from kdlib.book.frames import run_table


@pytest.fixture(scope="module")
def cluster():
    start_local(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def study():
    return load_study()


def _setups(study):
    return [("vowels", study.setup("vowels-seqcnn-self", "smoke", n_seeds=2)),
            ("digits", study.setup("digits-mlp-standard", "smoke", n_seeds=2, kd_weight_variants=[]))]


def test_ray_gives_the_numbers_of_the_local_executor(cluster, study, tmp_path):
    setups = _setups(study)
    jobs = collect_jobs(setups)
    local, remote = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    LocalExecutor("cpu").run(jobs, local)
    report = RayExecutor("cpu").run(jobs, remote)
    assert not report.failed and len(report.trained) == len(jobs)
    cols = ["arm", "seed", "kd_weight", "rcd_noise", "hash", "accuracy", "loss", "agreement", "js_divergence",
            "neg_agreement", "cka"]
    for _, s in setups:
        assert run_table(local, s)[cols].equals(run_table(remote, s)[cols])
    assert "ray" in remote.provenance(jobs[0].cfg)["executor"]
    again = RayExecutor("cpu").run(jobs, remote)  # a finished study trains nothing
    assert again.loaded == len(jobs) and not again.trained


def _ray_task_pids():
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if b"ray::_task" in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def test_a_killed_worker_is_retried_and_each_run_written_once(cluster, study, tmp_path):
    setup = study.setup("imdb-textcnn-self", "smoke", n_seeds=1, epochs=3, kd_weight_variants=[])
    jobs = collect_jobs([("imdb", setup)])
    store = RunStore(tmp_path / "runs")
    killed = []

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for pid in _ray_task_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    report = RayExecutor("cpu").run(jobs, store)
    t.join()
    assert killed, "no task process was found to kill"
    assert not report.failed and len(report.trained) == len(jobs)
    assert sorted(store.hashes()) == sorted(j.cfg.hash for j in jobs)
    assert not store.stale_tmp() and not list(store.root.glob(".trash-*"))


def test_a_failing_run_is_reported_and_the_others_finish(cluster, study, tmp_path):
    bad = study.setup("digits-mlp-self", "smoke", n_seeds=1, lr=1e30, optimizer="sgd", kd_weight_variants=[])
    good = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, kd_weight_variants=[])
    store = RunStore(tmp_path / "runs")
    report = RayExecutor("cpu").run(collect_jobs([("bad", bad), ("good", good)]), store)
    assert "non-finite loss" in report.failed[bad.teacher_run(0).label]
    assert all(report.failed[c.label] for c in bad.runs())
    assert not store.missing(good)


def test_workers_can_write_into_a_shared_store(cluster, study, tmp_path):
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, kd_weight_variants=[])
    store = RunStore(tmp_path / "runs")
    report = RayExecutor("cpu", shared_fs=True).run(collect_jobs([("v", setup)]), store)
    assert not report.failed and not store.missing(setup)


@pytest.mark.parametrize("shared_fs", [False, True])
def test_runs_stored_by_another_driver_meanwhile_are_found_not_trained(cluster, study, tmp_path, monkeypatch, shared_fs):
    """Two drivers on one store: runs the other one stored after this one listed its work are written once,
    under the local executor's per-run lock, and counted as found, not as trained."""
    import kdlib.executors_ray as er

    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, kd_weight_variants=[])
    store = RunStore(tmp_path / "runs")
    LocalExecutor("cpu").run(collect_jobs([("v", setup)]), store)  # the other driver, finished first
    before = {h: (store.path(h) / "metrics.json").stat().st_mtime_ns for h in store.hashes()}
    monkeypatch.setattr(er, "to_train", lambda jobs, store, report: list(jobs))  # as if listed before it stored them
    report = RayExecutor("cpu", shared_fs=shared_fs).run(collect_jobs([("v", setup)]), store)
    assert not report.failed and report.trained == [] and report.loaded == len(setup.runs())
    assert {h: (store.path(h) / "metrics.json").stat().st_mtime_ns for h in store.hashes()} == before  # not rewritten


def test_every_run_reports_each_epoch_in_order_to_the_bar(cluster, study, tmp_path, epoch_bars):
    """The epochs of runs on Ray workers reach the driver's progress line, each run's in order, none lost and
    none left on the line once its run has ended."""
    import kdlib.executors_ray as er

    epoch_bars.patch(er)
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, kd_weight_variants=[])
    jobs = collect_jobs([("v", setup)])
    report = RayExecutor("cpu").run(jobs, RunStore(tmp_path / "runs"))
    assert not report.failed
    epoch_bars.check_last(jobs, setup.train["epochs"])


class _FlakyInit:
    """ray.init that raises the given errors in turn, then returns "started"."""

    def __init__(self, *errors):
        self.errors, self.calls, self.shutdowns = list(errors), 0, 0

    def init(self, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "started"

    def shutdown(self):
        self.shutdowns += 1


def _flaky(monkeypatch, *errors):
    fake = _FlakyInit(*errors)
    monkeypatch.setattr(ray, "init", fake.init)
    monkeypatch.setattr(ray, "shutdown", fake.shutdown)
    return fake


TIMEOUT = Exception("The current node timed out during startup. This could happen because ...")


def test_a_cluster_that_timed_out_starting_is_started_again(monkeypatch):
    fake, said = _flaky(monkeypatch, TIMEOUT), []
    assert start_local(2, log=said.append) == "started"
    assert (fake.calls, fake.shutdowns) == (2, 1)  # the half-started cluster went down before the second start
    assert "attempt 1 of 3" in said[0]


def test_another_startup_error_is_raised_at_once(monkeypatch):
    fake = _flaky(monkeypatch, ValueError("num_cpus must be positive"))
    with pytest.raises(ValueError, match="num_cpus"):
        start_local(2, log=lambda _: None)
    assert (fake.calls, fake.shutdowns) == (1, 0)  # nothing of a cluster that may be running is touched


def test_a_cluster_that_never_starts_raises_after_the_last_attempt(monkeypatch):
    fake = _flaky(monkeypatch, TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT)
    with pytest.raises(Exception, match="timed out during startup"):
        start_local(2, attempts=3, log=lambda _: None)
    assert (fake.calls, fake.shutdowns) == (3, 3)
