"""The run store: atomic folders, no retraining, resume after a crash, loading as a DataFrame."""
import json

import pytest

from kdlib import load_study
from kdlib import runner as runner_mod
from kdlib.runner import run_setup, setup_results
from kdlib.store import RunStore


@pytest.fixture(scope="module")
def setup():
    return load_study().setup("vowels-seqcnn-self", "smoke", n_seeds=2, epochs=2)


def test_run_folder_contents_and_provenance(setup, tmp_path):
    store = RunStore(tmp_path)
    df = run_setup(setup, store, "cpu", progress=None)
    assert len(df) == 8 and set(df.arm) == {"teacher", "control", "kd", "rcd"}
    t = setup.run("teacher", 0)
    files = {p.name for p in store.path(t).iterdir()}
    assert files == {"config.json", "metrics.json", "provenance.json", "test_logits.npy", "train_logits.npy", "model.pt"}
    k = setup.run("kd", 1)
    assert {p.name for p in store.path(k).iterdir()} == {"config.json", "metrics.json", "provenance.json", "test_logits.npy"}
    prov = store.provenance(k)
    assert prov["device"].startswith("cpu") and prov["seconds"] > 0 and prov["packages"]["torch"]
    assert prov["code_version"] and json.loads((store.path(k) / "config.json").read_text())["arm"] == "kd"
    assert store.test_logits(k).dtype.name == "float32" and store.test_logits(k).shape == (370, 9)
    # the stored metrics recompute exactly from the stored float16 logits
    from kdlib.data import load_dataset
    from kdlib.metrics import functional_metrics
    y = load_dataset(setup.dataset, **setup.data_args).y_test.numpy()
    again = functional_metrics(store.test_logits(k), store.test_logits(setup.teacher_run(1)), y)
    for key, value in again.items():
        assert store.metrics(k)[key] == pytest.approx(value, abs=1e-12)
    all_runs = store.load_runs()
    assert len(all_runs) == 8 and {"hash", "accuracy", "seconds", "device", "code_version"} <= set(all_runs.columns)


def test_finished_runs_are_never_retrained(setup, tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run_setup(setup, store, "cpu", progress=None)

    def boom(*a, **k):
        raise AssertionError("retrained a finished run")

    monkeypatch.setattr(runner_mod, "train", boom)
    lines = []
    run_setup(setup, store, "cpu", progress=lines.append)
    assert all("done before" in line for line in lines) and len(lines) == 8


def test_killed_sweep_resumes_to_the_same_results(setup, tmp_path, monkeypatch):
    reference = run_setup(setup, RunStore(tmp_path / "ref"), "cpu", progress=None)
    store = RunStore(tmp_path / "crash")
    real_write, calls = store.write, {"n": 0}

    def dying_write(cfg, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # die half-way, in the middle of writing a run folder
            tmp = store.root / f".tmp-{cfg.hash}-dead"
            tmp.mkdir()
            (tmp / "metrics.json").write_text("{}")
            raise KeyboardInterrupt
        return real_write(cfg, *a, **k)

    monkeypatch.setattr(store, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run_setup(setup, store, "cpu", progress=None)
    assert len(store.hashes()) == 4 and len(store.stale_tmp()) == 1
    assert len(setup_results(setup, store)) == 4  # the partial folder is not read as finished
    monkeypatch.setattr(store, "write", real_write)
    resumed = run_setup(setup, store, "cpu", progress=None)
    cols = ["arm", "seed", "hash", "accuracy", "agreement", "js_divergence", "pos_agreement"]
    assert resumed[cols].equals(reference[cols])


def test_missing_run_error(setup, tmp_path):
    with pytest.raises(FileNotFoundError, match="not in the store"):
        RunStore(tmp_path).metrics(setup.run("kd", 0))


def test_top_level_run_and_paths(tmp_path, monkeypatch):
    import kdlib
    from kdlib.paths import REPO_ROOT, from_root

    assert from_root("results/cpu") == REPO_ROOT / "results" / "cpu"
    assert from_root(tmp_path) == tmp_path
    m = kdlib.run("vowels-seqcnn-self", "kd", seed=0, scale="smoke", results=str(tmp_path), device="cpu", epochs=1)
    assert 0 <= m["agreement"] <= 1 and "neg_agreement" in m
    assert len(RunStore(tmp_path / "runs").hashes()) == 2  # the teacher was trained first
