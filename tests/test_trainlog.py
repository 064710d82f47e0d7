"""The training log keeps every phase, with per-entry counts, and reads the older one-phase format."""
import json

from kdlib.trainlog import append_phase, entry_cost, entry_phases, read_log


def _phase(entries, wall=100.0):
    return {"started": "2026-11-30T10:00:00+0000", "finished": "2026-11-30T10:01:40+0000", "wall_seconds": wall,
            "runs_trained": sum(d["trained"] for d in entries.values()), "entries": entries}


def test_phases_accumulate_and_name_their_entries(tmp_path):
    assert read_log(tmp_path) == {"phases": []}
    append_phase(tmp_path, _phase({"a": {"runs": 60, "trained": 60, "failed": 0, "seconds": 500.0}}, wall=300.0))
    append_phase(tmp_path, _phase({"b": {"runs": 60, "trained": 60, "failed": 0, "seconds": 900.0}}, wall=500.0))
    append_phase(tmp_path, _phase({"a": {"runs": 60, "trained": 0, "failed": 0, "seconds": 0.0}}, wall=1.0))
    assert len(read_log(tmp_path)["phases"]) == 3
    assert [p["wall_seconds"] for p in entry_phases(tmp_path, "a")] == [300.0]  # the phase that trained nothing is not a's
    assert entry_cost(tmp_path, "b") == {"runs": 60, "train_seconds": 900.0, "wall_seconds": 500.0, "phases": 1}
    assert not list(tmp_path.glob(".*tmp"))  # written by rename


def test_a_phase_shared_by_two_entries_has_no_wall_time_of_its_own(tmp_path):
    append_phase(tmp_path, _phase({"a": {"runs": 60, "trained": 60, "failed": 0, "seconds": 500.0},
                                   "b": {"runs": 60, "trained": 50, "failed": 0, "seconds": 250.0}}))
    assert entry_cost(tmp_path, "b")["wall_seconds"] is None and entry_cost(tmp_path, "b")["runs"] == 50


def test_the_older_flat_log_reads_as_one_phase_for_every_entry(tmp_path):
    (tmp_path / "training_log.json").write_text(json.dumps({"wall_seconds": 5.0, "runs_trained": 3}))
    assert read_log(tmp_path)["phases"][0]["runs_trained"] == 3
    assert len(entry_phases(tmp_path, "anything")) == 1
