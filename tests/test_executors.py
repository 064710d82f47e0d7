"""The training phase: distinct runs once, teachers before students, failures recorded without stopping
the rest, and the same numbers from one process or a pool of workers."""
import pytest

from kdlib import load_study
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.results import ResultsFolder
from kdlib.store import RunStore
from kdlib.book.frames import run_table


@pytest.fixture(scope="module")
def study():
    return load_study()


def test_jobs_are_distinct_and_teachers_come_first(study):
    base = study.setup("digits-mlp-standard", "smoke", n_seeds=2)
    sweep = study.setup("digits-mlp-standard", "smoke", n_seeds=2, temperature=1.0)
    jobs = collect_jobs([("base", base), ("T1", sweep)])
    # the sweep shares teachers and controls: only its kd / rcd runs are new
    assert len(jobs) == len(base.runs()) + 2 * len(base.kd_weights) * 2
    shared = [j for j in jobs if j.cfg.arm in ("teacher", "control")]
    assert all(j.entries == ["base", "T1"] for j in shared)
    seen = set()
    for j in jobs:
        if j.cfg.is_student:
            assert j.cfg.teacher_hash in seen
        seen.add(j.cfg.hash)


def test_a_failed_run_is_reported_and_the_others_go_on(study, tmp_path):
    good = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, kd_weight_variants=[])
    bad = study.setup("digits-mlp-self", "smoke", n_seeds=1, lr=1e30, optimizer="sgd", kd_weight_variants=[])
    store = RunStore(tmp_path / "runs")
    report = LocalExecutor("cpu").run(collect_jobs([("bad", bad), ("good", good)]), store)
    assert len(report.failed) == len(bad.runs())  # the teacher diverged; its students fail with it
    assert "non-finite loss" in report.failed[bad.teacher_run(0).label]
    assert report.failed[bad.run_config("kd", 0).label] == "its teacher failed"
    assert len(report.trained) == len(good.runs()) and not store.missing(good)
    lines = report.summary_lines()
    assert any("FAILED digits-mlp-self/teacher/seed0" in line for line in lines)
    ResultsFolder(tmp_path).write_failures(report.failed)
    assert set(ResultsFolder(tmp_path).failures()) == set(report.failed)


def test_no_run_starts_after_the_time_limit(study, tmp_path):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1, kd_weight_variants=[])
    for workers in (1, 2):  # the pool of one and the process pool share one scheduler
        report = LocalExecutor("cpu", workers=workers).run(collect_jobs([("d", setup)]), RunStore(tmp_path / str(workers)),
                                                           stop_at=0.0)
        assert not report.trained and sorted(report.skipped) == sorted(r.label for r in setup.runs())


def test_a_pool_of_workers_gives_the_same_numbers(study, tmp_path):
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=2, kd_weight_variants=[])
    jobs = collect_jobs([("v", setup)])
    one, two = RunStore(tmp_path / "one"), RunStore(tmp_path / "two")
    LocalExecutor("cpu", workers=1).run(jobs, one)
    report = LocalExecutor("cpu", workers=2).run(jobs, two)
    assert not report.failed and len(report.trained) == len(jobs)
    cols = ["arm", "seed", "hash", "accuracy", "loss", "agreement", "js_divergence", "cka"]
    assert run_table(one, setup)[cols].equals(run_table(two, setup)[cols])


def test_every_run_reports_each_epoch_in_order_to_the_bar(study, tmp_path, epoch_bars):
    """Long runs (half an hour at the full scale) show their epochs; a report lost between a worker process
    and the driver, or one left on the line after its run ended, would show here."""
    import kdlib.executors as ex

    epoch_bars.patch(ex)
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, kd_weight_variants=[])
    for workers in (1, 2):
        jobs = collect_jobs([("v", setup)])
        LocalExecutor("cpu", workers=workers).run(jobs, RunStore(tmp_path / str(workers)))
        epoch_bars.check_last(jobs, setup.train["epochs"])


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        LocalExecutor("cpu", workers=0)


def _held(lock_file) -> bool:
    """Whether another process holds this run lock (a worker is training the run)."""
    import fcntl
    import os

    if not lock_file.exists():
        return False
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_ctrl_c_ends_the_worker_processes_at_once(study, tmp_path, monkeypatch):
    """Without stopping them, leaving the pool waits for the runs in flight (minutes at the mid scale); a
    run cut short leaves nothing in the store."""
    import multiprocessing
    import time

    import kdlib.executors as ex

    long_teacher = study.setup("digits-mlp-self", "smoke", n_seeds=2, kd_weight_variants=[], epochs=20000)
    jobs = [j for j in collect_jobs([("d", long_teacher)]) if j.cfg.arm == "teacher"]
    store = RunStore(tmp_path / "runs")
    locks = [store.lock_file(j.cfg) for j in jobs]

    def interrupted(futures, timeout=None, return_when=None):
        deadline = time.monotonic() + 600  # a guard against a hang, not a timing: the loop ends on the event
        while not all(_held(f) for f in locks):  # both workers are training their runs
            assert time.monotonic() < deadline, "the workers never started their runs"
            time.sleep(0.05)
        raise KeyboardInterrupt

    monkeypatch.setattr(ex, "wait", interrupted)
    before = set(multiprocessing.active_children())
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor("cpu", workers=2).run(jobs, store)
    # the workers are gone, not training on in the background (nor holding the runs' locks)
    assert not set(multiprocessing.active_children()) - before
    assert not any(_held(f) for f in locks)
    assert not store.hashes()


def test_the_driver_starts_no_run_after_stop_after_minutes(tmp_path, capsys):
    """A long entry trains in working sessions: `--stop-after` ends the phase cleanly (nothing half done)."""
    from kdlib.driver import main as driver_main

    args = ["--scale", "smoke", "--only", "vowels-seqcnn-self", "--results", str(tmp_path), "--train-only"]
    assert driver_main(args + ["--stop-after", "1e-9"]) == 0
    out = capsys.readouterr().out
    assert "not started before the time limit" in out and not RunStore(tmp_path / "runs").hashes()
    assert ResultsFolder(tmp_path).training_log()["phases"][-1]["runs_trained"] == 0
    assert driver_main(args + ["--stop-after", "0"]) == 2
    assert "--stop-after (minutes) must be > 0" in capsys.readouterr().err
