"""A store that can be trusted after a crash, an edit or a full disk: manifests and --verify / --repair /
--seal, a training phase that stops at the first store-wide write failure, per-run locks for two drivers
on one store, and paths checked before anything trains."""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib.driver import main as driver_main
from kdlib.store import RunStore, StoreError
from kdlib.book.frames import run_table

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ["--scale", "smoke", "--only", "vowels-seqcnn-self", "--workers", "1"]


@pytest.fixture()
def setup(vowels_setup):
    return vowels_setup


@pytest.fixture()
def results(vowels_results):  # the session's trained store (conftest); tests damage copies (_copy)
    return vowels_results


def _copy(results, tmp_path) -> Path:
    shutil.copytree(results, tmp_path / "results")
    return tmp_path / "results"


FILES = ["config.json", "metrics.json", "provenance.json", "outputs.npz", "train_logits.npy", "model.pt"]


@pytest.mark.parametrize("name", FILES)
def test_a_truncated_file_is_named_by_verify_and_fixed_by_repair(name, setup, results, tmp_path, capsys):
    folder = _copy(results, tmp_path)
    run = setup.teacher_run(1)  # a teacher has every kind of file
    store = RunStore(folder / "runs")
    path = store.path(run) / name
    before = store.metrics(run)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    capsys.readouterr()
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--verify"]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {run.hash}" in out and str(path) in out and "1 damaged" in out
    assert driver_main(ENTRY + ["--results", str(folder), "--repair", "--train-only"]) == 0
    out = capsys.readouterr().out
    assert f"repair: {path}" in out and "1 to train" in out
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--verify"]) == 0
    assert RunStore(folder / "runs").metrics(run) == before  # retrained to the same numbers


def test_loading_checks_sizes_and_json_checksums(setup, results, tmp_path):
    store = RunStore(_copy(results, tmp_path) / "runs")
    k, c = setup.run_config("kd", 0), setup.run_config("control", 0)
    p = store.path(k) / "metrics.json"
    text = p.read_text()
    p.write_text(text.replace('"accuracy": 0.', '"accuracy": 1.', 1))  # hand-edited, same size
    assert p.read_text() != text and len(p.read_text()) == len(text)
    with pytest.raises(StoreError, match=rf"{p} is damaged .*checksum differs"):
        store.metrics(k)
    p = store.path(c) / "outputs.npz"
    p.write_bytes(p.read_bytes() + b"\0" * 10)  # still loads with numpy: the size says it is not what was stored
    with pytest.raises(StoreError, match=rf"{p} is damaged .*bytes, its manifest says"):
        store.test_logits(c)


def test_legacy_runs_load_verify_as_no_manifest_and_seal(setup, results, tmp_path, capsys):
    folder = _copy(results, tmp_path)
    store = RunStore(folder / "runs")
    for h in store.hashes():  # as stored before manifests existed (results/mid)
        (store.path(h) / "manifest.json").unlink()
    store = RunStore(folder / "runs")
    k = setup.run_config("kd", 0)
    assert store.manifest(k) is None and store.metrics(k) and len(run_table(store, setup)) == 12
    # a legacy config.json that does not hash to its folder is named by --verify and not sealed
    t = setup.teacher_run(0)
    cfg = json.loads((store.path(t) / "config.json").read_text())
    cfg["train"]["epochs"] += 1
    (store.path(t) / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "12 with no manifest" in out and f"DAMAGED {t.hash}" in out and "not to its folder's name" in out
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--seal"]) == 1
    out = capsys.readouterr().out
    assert "11 run(s) without a manifest sealed" in out and "1 damaged (not sealed)" in out
    store = RunStore(folder / "runs")
    assert store.manifest(k) is not None and store.manifest(t) is None and store.verify(k) is None


def test_a_full_disk_stops_the_training_phase_at_the_first_write(tmp_path, monkeypatch, capsys):
    import kdlib.runner as runner

    calls = {"trained": 0}
    real = runner.execute_run

    def counted(*a, **k):
        calls["trained"] += 1
        return real(*a, **k)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runner, "execute_run", counted)
    monkeypatch.setattr("kdlib.store.np.savez_compressed", full)
    rc = driver_main(ENTRY + ["--results", str(tmp_path / "r"), "--train-only"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and calls["trained"] == 1
    assert len(err) == 1 and "No space left on device" in err[0] and "stopped at this first failed write" in err[0]
    assert not RunStore(tmp_path / "r" / "runs").hashes() and not list((tmp_path / "r" / "runs").glob(".tmp-*"))


def test_two_drivers_on_one_store_train_each_run_once(setup, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "kdlib.driver", *ENTRY, "--results", str(tmp_path / "r"), "--train-only"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [int(o.split("training phase: 12 distinct runs, ")[1].split(" trained")[0]) for o in outs]
    assert sum(trained) == 12, outs
    store = RunStore(tmp_path / "r" / "runs")
    assert len(store.hashes()) == 12 and all(store.verify(h) is None for h in store.hashes())


def test_paths_are_checked_before_training(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    for argv, message in ((["--out", str(a_file / "book")], "--out"),
                          (["--results", str(a_file / "results")], "cannot create the run store")):
        argv = (["--results", str(tmp_path / "r")] if "--results" not in argv else []) + argv
        rc = driver_main(ENTRY + argv + ["--no-build"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0] and "Traceback" not in err[0]
        assert not (tmp_path / "r" / "runs").exists() or not RunStore(tmp_path / "r" / "runs").hashes()


def test_repair_retrains_a_slim_teacher_that_new_students_need(setup, results, tmp_path, capsys):
    """A shipped (slim) store keeps no training logits: the preflight refuses new students of such a teacher and
    names --repair, and --repair retrains that teacher (to the same numbers) and then its students."""
    folder = _copy(results, tmp_path)
    store = RunStore(folder / "runs")
    teacher, kd = setup.teacher_run(0), setup.run_config("kd", 0)
    before = store.metrics(teacher)
    store.slim()
    store.discard(kd)  # a student still to train, as a new objective's entry on shipped teachers
    assert not RunStore(folder / "runs").has_teacher_extras(teacher)
    capsys.readouterr()
    assert driver_main(ENTRY + ["--results", str(folder), "--train-only"]) != 0
    said = capsys.readouterr()
    assert "rerun with --repair" in said.out + said.err
    assert driver_main(ENTRY + ["--results", str(folder), "--repair", "--train-only"]) == 0
    out = capsys.readouterr().out
    assert f"repair: teacher {teacher.hash} was stored slim" in out and "2 to train" in out
    store = RunStore(folder / "runs")
    assert store.has(kd) and store.has_teacher_extras(teacher) and store.metrics(teacher) == before


def test_a_phase_killed_outright_is_logged_and_counted_by_the_next(tmp_path):
    """kill -9 during training: the phase's start record stays in the log; the next phase closes it with the
    runs stored before the kill (counted from their provenance) and says how it ended. Waits on the store,
    not on time."""
    import signal
    import time

    from kdlib.results import ResultsFolder

    folder = tmp_path / "results"
    cmd = [sys.executable, "-m", "kdlib.driver", "--scale", "cpu", "--only", "digits-mlp-self", "--workers", "1",
           "--results", str(folder), "--train-only"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = folder / "runs"
    try:
        while proc.poll() is None and len([p for p in runs.glob("*") if (p / "manifest.json").is_file()]) < 3:
            time.sleep(0.05)  # polling the event (three runs stored), whatever the machine's load
        assert proc.poll() is None, "the phase ended before it could be killed"
        log = ResultsFolder(folder).training_log()["phases"]
        assert len(log) == 1 and log[0]["status"] == "running"  # the start record, written first
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = len(RunStore(runs).hashes())
    assert driver_main(["--scale", "smoke", "--only", "vowels-seqcnn-self", "--results", str(folder), "--train-only",
                        "--workers", "1"]) == 0
    phases = ResultsFolder(folder).training_log()["phases"]
    assert len(phases) == 2 and "status" not in phases[0] and "planned" not in phases[0]
    assert "ended without its final record" in phases[0]["interrupted"]
    assert phases[0]["runs_trained"] == stored == phases[0]["entries"]["digits-mlp-self"]["trained"]
    assert phases[1]["runs_trained"] == 12 and "interrupted" not in phases[1]
