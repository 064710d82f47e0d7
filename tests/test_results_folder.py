"""A results folder's owner: the training log keeps every phase with per-entry counts (and reads the older
one-phase format), failures are replaced per phase, and a reader creates no folders."""
import json

import pytest

from kdlib.results import ResultsFolder
from kdlib.studyfile import load_study


def _phase(entries, wall=100.0):
    return {"started": "2026-11-30T10:00:00+0000", "finished": "2026-11-30T10:01:40+0000", "wall_seconds": wall,
            "runs_trained": sum(d["trained"] for d in entries.values()), "entries": entries}


def test_phases_accumulate_and_name_their_entries(tmp_path):
    folder = ResultsFolder(tmp_path)
    assert folder.training_log() == {"phases": []}
    folder.append_training_phase(_phase({"a": {"runs": 60, "trained": 60, "failed": 0, "seconds": 500.0}}, wall=300.0))
    folder.append_training_phase(_phase({"b": {"runs": 60, "trained": 60, "failed": 0, "seconds": 900.0}}, wall=500.0))
    folder.append_training_phase(_phase({"a": {"runs": 60, "trained": 0, "failed": 0, "seconds": 0.0}}, wall=1.0))
    assert len(ResultsFolder(tmp_path).training_log()["phases"]) == 3  # read back from the file
    assert [p["wall_seconds"] for p in folder.entry_phases("a")] == [300.0]  # the phase that trained nothing is not a's
    assert folder.entry_cost("b") == {"runs": 60, "train_seconds": 900.0, "wall_seconds": 500.0, "phases": 1,
                                      "notes": []}
    assert not list(tmp_path.glob(".*tmp"))  # written by rename


def test_a_phase_shared_by_two_entries_has_no_wall_time_of_its_own(tmp_path):
    folder = ResultsFolder(tmp_path)
    folder.append_training_phase(_phase({"a": {"runs": 60, "trained": 60, "failed": 0, "seconds": 500.0},
                                         "b": {"runs": 60, "trained": 50, "failed": 0, "seconds": 250.0}}))
    assert folder.entry_cost("b")["wall_seconds"] is None and folder.entry_cost("b")["runs"] == 50


def test_a_phase_note_reaches_the_entry_cost(tmp_path):
    folder = ResultsFolder(tmp_path)
    folder.append_training_phase(_phase({"a": {"runs": 60, "trained": 60, "failed": 0, "seconds": 500.0}}))
    folder.append_training_phase({**_phase({"a": {"runs": 60, "trained": 0, "failed": 0, "seconds": 0.0}}),
                                  "note": "shared the cores"})  # trained none of a's runs: not a's phase
    folder.append_training_phase({**_phase({"b": {"runs": 60, "trained": 60, "failed": 0, "seconds": 500.0}}),
                                  "note": "shared the cores"})
    assert folder.entry_cost("a")["notes"] == [] and folder.entry_cost("b")["notes"] == ["shared the cores"]


def test_an_entry_whose_runs_were_replaced_costs_only_the_phases_of_its_stored_runs(tmp_path):
    """Its config changed, its old runs were deleted and trained again: the old phase stays in the log but
    is not what the stored runs cost; without the runs' stamps every phase that trained the entry counts."""
    folder = ResultsFolder(tmp_path)
    old = {**_phase({"a": {"runs": 60, "trained": 60, "failed": 0, "seconds": 3900.0}}, wall=2200.0),
           "started": "2026-12-01T03:32:16+0000", "finished": "2026-12-01T04:08:16+0000"}
    new = {**_phase({"a": {"runs": 60, "trained": 60, "failed": 0, "seconds": 5800.0}}, wall=3000.0),
           "started": "2026-12-07T23:47:30+0000", "finished": "2026-12-08T00:37:30+0000"}
    folder.append_training_phase(old)
    folder.append_training_phase(new)
    assert folder.entry_cost("a")["runs"] == 120  # no stamps: every phase that trained it
    stored = ["2026-12-07T23:49:01+0000", "2026-12-08T00:37:30+0000"]  # the second at the phase's last second
    assert [p["started"] for p in folder.entry_phases("a", stored)] == [new["started"]]
    assert folder.entry_cost("a", stored) == {"runs": 60, "train_seconds": 5800.0, "wall_seconds": 3000.0, "phases": 1,
                                              "notes": []}
    assert len(folder.entry_phases("a", ["2026-12-01T04:00:00+0000", *stored])) == 2  # one old run kept: both
    assert folder.entry_phases("a", []) == [] and folder.entry_phases("a", [None]) == []  # nothing stored


def test_the_older_flat_log_reads_as_one_phase_for_every_entry(tmp_path):
    (tmp_path / "training_log.json").write_text(json.dumps({"wall_seconds": 5.0, "runs_trained": 3}))
    assert ResultsFolder(tmp_path).training_log()["phases"][0]["runs_trained"] == 3
    assert len(ResultsFolder(tmp_path).entry_phases("anything")) == 1
    assert len(ResultsFolder(tmp_path).entry_phases("anything", ["2026-12-01T04:00:00+0000"])) == 1


def test_failures_are_replaced_by_each_phase(tmp_path):
    folder = ResultsFolder(tmp_path)
    assert folder.failures() == {}
    folder.write_failures({"s/kd w0.9/seed0": "boom"})
    assert folder.failures() == {"s/kd w0.9/seed0": "boom"}
    folder.write_failures({})  # a phase without failures removes the file
    assert not (tmp_path / ResultsFolder.FAILURES).exists() and folder.failures() == {}


def test_a_reader_creates_no_store_and_the_study_names_the_folder(tmp_path):
    folder = ResultsFolder(tmp_path / "absent")
    assert folder.existing_store() is None and not (tmp_path / "absent").exists()
    assert folder.store().root == tmp_path / "absent" / "runs" and folder.existing_store() is not None
    study = load_study()
    assert ResultsFolder.of(study, "mid").root.name == "mid"  # the study file's folder for the scale
    assert ResultsFolder.of(study, "mid", tmp_path) == ResultsFolder(tmp_path)  # an override wins


def test_an_interrupted_phase_logs_the_runs_it_stored_and_the_next_phase_the_rest(tmp_path, monkeypatch):
    """Ctrl-C after three runs: the log keeps those three with their seconds, marked interrupted, so an entry
    trained over two phases adds up to all of its runs."""
    import kdlib.runner as runner_mod
    from kdlib.driver import main

    real, calls = runner_mod.run_and_store, []

    def stop_at_the_fourth(cfg, store, device, on_epoch=None):
        calls.append(cfg.label)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(cfg, store, device, on_epoch)

    monkeypatch.setattr(runner_mod, "run_and_store", stop_at_the_fourth)
    argv = ["--scale", "smoke", "--only", "digits-mlp-self", "--results", str(tmp_path), "--workers", "1",
            "--device", "cpu", "--train-only"]
    assert main(argv) == 130
    folder = ResultsFolder(tmp_path)
    (phase,) = folder.training_log()["phases"]
    assert phase["interrupted"] and phase["runs_trained"] == 3
    assert phase["entries"]["digits-mlp-self"]["trained"] == 3
    store = folder.store()  # the seconds are those of the stored runs (a smoke run can take under 0.05 s)
    assert phase["entries"]["digits-mlp-self"]["seconds"] == pytest.approx(
        sum(store.provenance(h)["seconds"] for h in store.hashes()), abs=0.2)
    monkeypatch.setattr(runner_mod, "run_and_store", real)
    assert main(argv) == 0
    n_runs = len(load_study().entry_setup("smoke", next(e for e in load_study().plan("smoke")
                                                             if e.id == "digits-mlp-self")).runs())
    assert folder.entry_cost("digits-mlp-self")["runs"] == n_runs
    assert "interrupted" not in folder.training_log()["phases"][1]
