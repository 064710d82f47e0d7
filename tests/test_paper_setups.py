"""Every entry of the `paper` plan, at the `smoke` scale, end to end on the CPU, on small copies of the
published dataset files written by tests/datafiles.py: the loaders read the archives in their own
layouts, the setups resolve with each entry's parameters, every run trains and is stored with sane
metrics, and the preflight passes with the files present and names the missing file without them.

One seed and the main KD weight only (n_seeds=1, kd_weight_variants=[]). All entries share one run
store, so runs that several entries have in common (a sweep's teacher and control, a student size equal
to the smoke default) are trained once.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from kdlib import load_study
from kdlib.data import _load_cached
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.preflight import PreflightError, resolve_plan
from kdlib.store import RunStore
from kdlib.studyfile import PlanEntry
from tests import datafiles

STUDY = load_study()
PAPER = STUDY.plan("paper")
PAPER_SETUPS = list(dict.fromkeys(e.setup for e in PAPER))
SMALL = {"n_seeds": 1, "kd_weight_variants": []}
# the file each dataset reads first (in the order the loader looks for them)
FIRST_FILE = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz", "svhn": "train_32x32.mat",
              "tinyimagenet": "tiny-imagenet-200.zip", "speechcommands": "speech_commands_v0.02.tar.gz",
              "imdb_full": "aclImdb_v1.tar.gz", "fsdd": "fsdd.tar.gz"}


def smoke_setup(entry: PlanEntry):
    """The entry's setup at the smoke scale with the entry's parameters, one seed, the main KD weight."""
    return STUDY.setup(entry.setup, "smoke", **{**entry.params, **SMALL})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Every dataset's files in a data folder (KDLIB_DATA), their checksums trusted, a fresh cache
    (KDLIB_CACHE), the repository's own data folders hidden, and one run store for the module."""
    root = tmp_path_factory.mktemp("paper")
    with pytest.MonkeyPatch.context() as mp:
        files = datafiles.write_all(root / "data")
        mp.setenv("KDLIB_DATA", str(root / "data"))
        mp.setenv("KDLIB_CACHE", str(root / "cache"))
        mp.setattr("kdlib.paths.REPO_ROOT", root / "repo")
        datafiles.trust(mp, *files.values())
        _load_cached.cache_clear()
        yield SimpleNamespace(root=root, files=files, store=RunStore(root / "runs"), seen=set())
        _load_cached.cache_clear()


def test_every_paper_setup_has_a_smoke_scale_and_every_dataset_a_writer():
    assert PAPER and all("smoke" in (STUDY.spec(name).get("scales") or {}) for name in PAPER_SETUPS)
    datasets = {STUDY.spec(name)["dataset"] for name in PAPER_SETUPS}
    assert datasets <= set(FIRST_FILE), f"no test files for {sorted(datasets - set(FIRST_FILE))}: add a writer to tests/datafiles.py"


@pytest.mark.parametrize("name", PAPER_SETUPS)
def test_preflight_passes_with_the_files_present(env, name):
    entries = [PlanEntry(e.id, e.setup, {**e.params, **SMALL}, e.title) for e in PAPER if e.setup == name]
    resolved = resolve_plan(STUDY, "smoke", entries)
    assert [i for i, _ in resolved] == [e.id for e in entries]
    assert all(cfg.scale == "smoke" and cfg.n_seeds == 1 for _, cfg in resolved)


@pytest.mark.parametrize("name", PAPER_SETUPS)
def test_preflight_names_the_missing_file_with_downloads_off(tmp_path, monkeypatch, name):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("KDLIB_DATA", str(empty))
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("kdlib.paths.REPO_ROOT", tmp_path / "repo")
    entry = PlanEntry(f"{name}-offline", name, {"data_args": {"download": False}})
    with pytest.raises(PreflightError) as e:
        resolve_plan(STUDY, "smoke", [entry])
    msg = str(e.value)
    filename = FIRST_FILE[STUDY.spec(name)["dataset"]]
    assert msg.startswith("1 problem(s) in the plan; nothing was trained")
    assert f"entry '{name}-offline' (setup '{name}'): DataError: {filename} " in msg
    assert str(empty) in msg
    assert ("Downloads are off" in msg) if filename != "fsdd.tar.gz" else ("It has no download here" in msg)


@pytest.mark.parametrize("entry", PAPER, ids=[e.id for e in PAPER])
def test_paper_entry_trains_end_to_end_at_smoke_scale(env, entry):
    cfg = smoke_setup(entry)
    runs = cfg.runs()
    assert [r.arm for r in runs] == ["teacher", "control", "kd", "rcd"]
    report = LocalExecutor("cpu").run(collect_jobs([(entry.id, cfg)]), env.store)
    assert not report.failed, "\n\n".join(f"{label}:\n{err}" for label, err in report.failed.items())
    # runs an earlier entry trained (same config, e.g. a sweep's teacher and control) come from the store
    shared = [r.label for r in runs if r.hash in env.seen]
    assert report.total == len(runs) and report.loaded == len(shared) and len(report.trained) == len(runs) - len(shared)
    env.seen.update(r.hash for r in runs)
    files = [p.name for p in env.files[cfg.dataset]]
    for run in runs:
        assert env.store.has(run), run.label
        m = env.store.metrics(run)
        data = env.store.provenance(run)["data"]
        assert any(f in data["source"] for f in files), data["source"]  # the written files, not another copy
        if "n_train" in cfg.data_args:
            assert data["n_train"] == cfg.data_args["n_train"]
        out = env.store.outputs(run)  # stored as float16: a value beyond 65504 would be inf
        for key in ("test_logits", "features"):
            finite = np.isfinite(out[key])
            bad, largest = int((~finite).sum()), float(np.abs(out[key][finite]).max(initial=0.0))
            assert bad == 0, (f"{run.label}: {bad} of {finite.size} stored {key} are not finite (float16 overflow?); "
                              f"the largest finite magnitude is {largest:g}")
        for key in ("accuracy", "train_accuracy"):
            assert 0.0 <= m[key] <= 1.0, (run.label, key, m[key])
        if run.is_student:
            assert 0.0 <= m["agreement"] <= 1.0 and math.isclose(m["agreement"] + m["disagreement"], 1.0)
            assert math.isfinite(m["cka"]), (run.label, m["cka"])
        if cfg.backdoor:
            for key in ("backdoor_asr", "backdoor_clean_rate"):
                assert 0.0 <= m[key] <= 1.0, (run.label, key, m.get(key))
            assert math.isclose(m["backdoor_lift"], m["backdoor_asr"] - m["backdoor_clean_rate"], abs_tol=1e-9)
        else:
            assert "backdoor_asr" not in m


def test_the_backdoor_entry_is_in_the_plan():
    assert [e.id for e in PAPER if smoke_setup(e).backdoor] == ["imdb-gpt2-backdoor"]
