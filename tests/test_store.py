"""The run store: atomic folders, no retraining, resuming after a kill, partial and damaged folders,
stale temporary folders, and errors that name the file."""
import json
import os
import socket

import numpy as np
import pytest

from kdlib import load_study
from kdlib import runner as runner_mod
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.store import RunStore, StoreError
from kdlib.book.frames import run_table
from kdlib.results import ResultsFolder


@pytest.fixture(scope="module")
def setup():
    return load_study().setup("vowels-seqcnn-self", "smoke", n_seeds=2, epochs=2, kd_weight_variants=[])


@pytest.fixture(scope="module")
def trained(setup, tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("store"))
    report = LocalExecutor("cpu").run(collect_jobs([("v", setup)]), store)
    assert not report.failed
    return store


def _copy(store, tmp_path):
    import shutil

    shutil.copytree(store.root, tmp_path / "copy")
    return RunStore(tmp_path / "copy")


def test_run_folder_contents_and_provenance(setup, trained):
    store = trained
    df = run_table(store, setup)
    assert len(df) == 8 and set(df.arm) == {"teacher", "control", "kd", "rcd"}
    t = setup.teacher_run(0)
    assert {p.name for p in store.path(t).iterdir()} == {"config.json", "metrics.json", "provenance.json",
                                                         "outputs.npz", "train_logits.npy", "model.pt", "manifest.json"}
    k = setup.run_config("kd", 1)
    assert {p.name for p in store.path(k).iterdir()} == {"config.json", "metrics.json", "provenance.json", "outputs.npz",
                                                         "manifest.json"}
    assert set(store.manifest(k)["files"]) == {"config.json", "metrics.json", "provenance.json", "outputs.npz"}
    prov = store.provenance(k)
    assert prov["device"].startswith("cpu") and prov["seconds"] > 0 and prov["packages"]["torch"]
    assert prov["cpu_threads"] >= 1 and prov["bitwise_reproducible"] is True
    assert len(prov["data"]["fingerprint"]) == 64 and prov["data"]["n_train"] == 270
    assert prov["code_version"] and json.loads((store.path(k) / "config.json").read_text())["arm"] == "kd"
    out = store.outputs(k)
    assert out["test_logits"].dtype == np.float16 and out["test_logits"].shape == (370, 9)
    assert out["features"].dtype == np.float16 and out["features"].shape[0] == 370
    t1 = setup.teacher_run(1)  # the kd run's own teacher (same seed)
    labels = store.outputs(t1)["test_labels"]
    # the stored metrics recompute exactly from the stored float16 outputs and labels
    from kdlib.metrics import functional_metrics

    again = functional_metrics(store.test_logits(k), store.test_logits(t1), labels,
                               student_features=store.features(k), teacher_features=store.features(t1))
    for key, value in again.items():
        assert store.metrics(k)[key] == pytest.approx(value, abs=1e-12), key


def test_finished_runs_are_never_retrained(setup, trained, tmp_path, monkeypatch):
    store = _copy(trained, tmp_path)

    def boom(*a, **k):
        raise AssertionError("retrained a finished run")

    monkeypatch.setattr(runner_mod, "train", boom)
    report = LocalExecutor("cpu").run(collect_jobs([("v", setup)]), store)
    assert report.loaded == 8 and not report.trained and not report.failed


def test_killed_run_leaves_nothing_and_resumes_to_the_same_results(setup, trained, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "crash")
    real_write, calls = store.write, {"n": 0}

    def dying_write(record):
        calls["n"] += 1
        if calls["n"] == 5:  # killed half-way through writing a run folder (a dead writer's leftovers)
            tmp = store.root / f".tmp-{record.config.hash}@{socket.gethostname()}@999999999@dead"
            tmp.mkdir()
            (tmp / "metrics.json").write_text("{}")
            raise KeyboardInterrupt
        return real_write(record)

    monkeypatch.setattr(store, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor("cpu").run(collect_jobs([("v", setup)]), store)
    assert len(store.hashes()) == 4 and len(store.stale_tmp()) == 1
    assert len(run_table(store, setup)) == 4  # the partial folder is not read as finished
    reopened = RunStore(store.root)  # the next start removes the dead writer's folder and says so
    assert reopened.removed_stale == 1 and not reopened.stale_tmp()
    LocalExecutor("cpu").run(collect_jobs([("v", setup)]), reopened)
    cols = ["arm", "seed", "hash", "accuracy", "agreement", "js_divergence", "pos_agreement", "cka"]
    assert run_table(reopened, setup)[cols].equals(run_table(trained, setup)[cols])


def test_live_writers_folders_are_kept(tmp_path):
    live = tmp_path / f".tmp-abc@{socket.gethostname()}@{os.getpid()}@x"
    other_host = tmp_path / ".tmp-abc@another-machine@1@x"
    live.mkdir(), other_host.mkdir()
    assert RunStore(tmp_path).removed_stale == 0 and live.exists() and other_host.exists()


def test_a_partial_folder_is_replaced_by_the_finished_run(setup, trained, tmp_path):
    store = _copy(trained, tmp_path)
    k = setup.run_config("kd", 1)
    (store.path(k) / "metrics.json").unlink()  # a partial copy
    assert not store.has(k) and [r.label for r in store.missing(setup)] == [k.label]
    report = LocalExecutor("cpu").run(collect_jobs([("v", setup)]), store)
    assert report.trained == [k.label] and store.has(k) and not store.missing(setup)
    assert store.metrics(k) == trained.metrics(k)
    assert not list(store.root.glob(".trash-*")) and not store.stale_tmp()


def test_damaged_files_are_named_and_can_be_repaired(setup, trained, tmp_path):
    store = _copy(trained, tmp_path)
    k, c = setup.run_config("kd", 0), setup.run_config("control", 0)
    (store.path(k) / "metrics.json").write_text('{"accuracy": 0.9')  # truncated
    with pytest.raises(StoreError, match=rf"{store.path(k) / 'metrics.json'} is damaged .*--repair"):
        store.metrics(k)
    p = store.path(c) / "outputs.npz"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(StoreError, match=rf"{p} is damaged"):
        store.test_logits(c)
    assert store.verify(c) and store.verify(setup.teacher_run(0)) is None
    store.discard(c)
    assert not store.has(c)


def test_missing_run_error(setup, tmp_path):
    with pytest.raises(StoreError, match="not in the store"):
        RunStore(tmp_path).metrics(setup.run_config("kd", 0))


def test_unwritable_store_is_reported():
    # /proc refuses new folders even to root, so this holds for any user
    with pytest.raises(StoreError, match="not writable"):
        RunStore("/proc/self").check_writable()
    with pytest.raises(StoreError, match="cannot create the run store"):
        RunStore("/proc/self/kdlib-store")


def test_slim_store_and_stale_versions(setup, trained, tmp_path):
    store = _copy(trained, tmp_path)
    assert store.slim() == 4  # training logits and weights of the 2 teachers
    t = setup.teacher_run(0)
    assert store.has(t) and not store.has_teacher_extras(t)
    with pytest.raises(StoreError, match="stored without its training logits"):
        store.train_logits(t)
    longer = load_study().setup("vowels-seqcnn-self", "smoke", n_seeds=2, epochs=3, kd_weight_variants=[])
    stale = store.stale_versions(longer.runs())
    assert len(stale) == 8 and all(v["fields"] == ["train"] for v in stale.values() if "teacher" in v["label"])
    # the stored runs are another plan entry's (the same setup, another size): excluded, none is an old version
    kept = store.stale_versions(longer.runs(), exclude=store.hashes())
    assert kept == {}
    teacher_hash = setup.teacher_run(0).hash  # one excluded: its run stands in for no one, the others still do
    partly = store.stale_versions(longer.runs(), exclude=[teacher_hash])
    assert len(partly) == 7 and teacher_hash not in {v["stored_hash"] for v in partly.values()}


def test_top_level_run_and_paths(tmp_path):
    import kdlib
    from kdlib.paths import REPO_ROOT, from_root

    assert from_root("results/cpu") == REPO_ROOT / "results" / "cpu"
    assert from_root(tmp_path) == tmp_path
    m = kdlib.run("vowels-seqcnn-self", "kd", seed=0, scale="smoke", results_dir=str(tmp_path), device="cpu", epochs=1)
    assert 0 <= m["agreement"] <= 1 and "neg_agreement" in m
    assert len(ResultsFolder(tmp_path).store().hashes()) == 2  # the teacher was trained first
