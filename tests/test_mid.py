"""The CIFAR-10 mid scale: its setups run at the smoke scale on a few hundred images; its shipped runs are
found and read without training; a changed config hash is reported with the command that recomputes
the runs, never retrained silently."""
import json

import pytest

from kdlib import load_study
from kdlib.driver import shipped_chapters
from kdlib.executors import LocalExecutor, collect_jobs
from kdlib.paths import REPO_ROOT
from kdlib.store import RunStore
from kdlib.studyfile import load_study as load_file
from tests.conftest import shared_file

SHIPPED = REPO_ROOT / "results" / "mid" / "runs"


def test_mid_setups_run_at_the_smoke_scale(tmp_path):
    shared_file("cifar10-jpeg.tar.gz")
    study = load_study()
    setups = [(n, study.setup(n, "smoke", n_seeds=1)) for n in ("cifar10-mid-self", "cifar10-mid-standard")]
    store = RunStore(tmp_path)
    report = LocalExecutor("cpu").run(collect_jobs(setups), store)
    assert not report.failed
    assert all(not store.missing(s) for _, s in setups)
    # the standard setup reuses the self-distillation setup's teacher: one run, not two
    assert setups[0][1].teacher_run(0).hash == setups[1][1].teacher_run(0).hash
    assert store.outputs(setups[0][1].teacher_run(0))["test_logits"].shape == (300, 10)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="results/mid is not in this checkout")
def test_shipped_runs_are_complete_slim_and_read_without_training(monkeypatch):
    import kdlib.runner as runner_mod

    study = load_study()
    store = RunStore(SHIPPED)
    for e in study.plan("mid"):
        cfg = study.entry_setup("mid", e)
        assert not store.missing(cfg), e.id
        assert cfg.n_seeds == 10 and set(cfg.kd_weights) == {0.9, 0.1}
    t = study.setup("cifar10-mid-self", "mid").teacher_run(0)
    assert not store.has_teacher_extras(t)  # shipped slim: no training logits, no weights
    prov = store.provenance(t)
    assert prov["device"].startswith("cpu") and prov["finished_at"] and prov["code_version"]
    log = json.loads((SHIPPED.parent / "training_log.json").read_text())
    assert log["runs_failed"] == 0 and log["wall_seconds"] > 0 and "CPU cores" in log["machine"]

    def boom(*a, **k):
        raise AssertionError("a shipped run was retrained")

    monkeypatch.setattr(runner_mod, "train", boom)
    chapters, notes = shipped_chapters(study, "cpu")
    mid = [c for c in chapters if c.scale == "mid"]
    assert [c.entry.id for c in mid] == [e.id for e in study.plan("mid")] and not any(c.train_missing for c in mid)
    assert not [n for n in notes if n.startswith("mid")]


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="results/mid is not in this checkout")
def test_a_changed_hash_is_reported_not_retrained(tmp_path):
    text = (REPO_ROOT / "study.yaml").read_text()
    changed = text.replace("mid: {train: {epochs: 16,", "mid: {train: {epochs: 17,")
    assert changed != text
    path = tmp_path / "study.yaml"
    path.write_text(changed)
    study = load_file(path)
    chapters, notes = shipped_chapters(study, "cpu")
    assert not [c for c in chapters if c.scale == "mid" and c.entry.id == "cifar10-mid-self"]
    note = next(n for n in notes if n.startswith("mid/cifar10-mid-self"))
    assert "under another config hash" in note and "train" in note
    assert "python -m kdlib.driver --scale mid --only cifar10-mid-self" in note
