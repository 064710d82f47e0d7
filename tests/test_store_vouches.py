"""Every read vouches for the run (issue: swapped folders, unsealed edits and foreign teacher logits are
refused, and every fault is named). Each test damages one thing in a copy of a real smoke store and checks
that a plain read, a training phase, the tables and --verify name it; none of them passes on the store code
that checked only sizes and the JSON files' checksums."""
import json
import shutil

import pytest

from kdlib.book.frames import damaged_runs, run_table
from kdlib.driver import main as driver_main
from kdlib.store import SEALED, RunStore, StoreError

ENTRY = ["--scale", "smoke", "--only", "vowels-seqcnn-self", "--workers", "1"]


@pytest.fixture()
def setup(vowels_setup):
    return vowels_setup


@pytest.fixture()
def folder(vowels_copy):  # a copy of the session's trained store (conftest), this test's own
    return vowels_copy


def _swap(store, a, b):
    pa, pb, tmp = store.path(a), store.path(b), store.root / "swap"
    pa.rename(tmp), pb.rename(pa), tmp.rename(pb)


def test_swapped_folders_are_refused_on_read_and_left_out_of_the_tables(setup, folder, capsys):
    store = RunStore(folder / "runs")
    a, b = setup.run_config("control", 0), setup.run_config("control", 1)
    _swap(store, a, b)
    store = RunStore(folder / "runs")
    with pytest.raises(StoreError, match=rf"hashes to {b.hash}, not to its folder's name {a.hash}.*swapped"):
        store.metrics(a)
    table = run_table(store, setup)
    assert a.hash not in set(table["hash"]) and b.hash not in set(table["hash"]) and len(table) == len(setup.runs()) - 2
    assert set(damaged_runs(store, setup)) == {a.label, b.label}
    capsys.readouterr()
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--verify"]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {a.hash}" in out and f"DAMAGED {b.hash}" in out and "2 damaged" in out and "--repair" in out


def test_a_run_without_a_manifest_in_a_sealed_store_is_damage(setup, folder, capsys):
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--seal"]) == 0
    store = RunStore(folder / "runs")
    assert store.sealed and (folder / "runs" / SEALED).is_file()
    kd = setup.run_config("kd", 0)
    p = store.path(kd) / "metrics.json"
    metrics = json.loads(p.read_text())
    metrics["accuracy"] = 0.999
    p.write_text(json.dumps(metrics))
    (store.path(kd) / "manifest.json").unlink()  # the edit hidden by removing the manifest
    store = RunStore(folder / "runs")
    with pytest.raises(StoreError, match="missing in a sealed store"):
        store.metrics(kd)
    assert kd.hash not in set(run_table(store, setup)["hash"])
    capsys.readouterr()
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--verify"]) == 1
    assert f"DAMAGED {kd.hash}" in capsys.readouterr().out


def test_seal_refuses_metrics_that_do_not_follow_from_the_stored_logits(setup, folder, capsys):
    store = RunStore(folder / "runs")
    for h in store.hashes():
        (store.path(h) / "manifest.json").unlink()
    kd = setup.run_config("kd", 0)
    p = store.path(kd) / "metrics.json"
    metrics = json.loads(p.read_text())
    metrics["accuracy"] = round(metrics["accuracy"] + 0.25, 4)
    p.write_text(json.dumps(metrics))
    capsys.readouterr()
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--seal"]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {kd.hash}" in out and "does not follow from its stored test logits" in out
    store = RunStore(folder / "runs")
    assert store.manifest(kd) is None and not store.sealed  # not sealed, and the store not marked
    assert store.recompute_check(setup.run_config("kd", 1)) is None  # an untouched run follows from its logits


@pytest.mark.parametrize("how", ["another teacher's", "one byte flipped"])
def test_foreign_teacher_logits_stop_the_student_that_would_use_them(setup, folder, how, capsys):
    store = RunStore(folder / "runs")
    t0, t1, kd = setup.teacher_run(0), setup.teacher_run(1), setup.run_config("kd", 0)
    p = store.path(t0) / "train_logits.npy"
    if how == "another teacher's":
        shutil.copy(store.path(t1) / "train_logits.npy", p)  # same size, other numbers
    else:
        data = bytearray(p.read_bytes())
        data[-3] ^= 0xFF
        p.write_bytes(bytes(data))
    store.discard(kd)
    capsys.readouterr()
    rc = driver_main(ENTRY + ["--results", str(folder), "--train-only"])
    out = capsys.readouterr()
    assert rc != 0 and str(p) in out.out + out.err and "checksum differs" in out.out + out.err
    assert not RunStore(folder / "runs").has(kd)  # not retrained from the wrong logits


def test_verify_goes_through_every_kind_of_damage_and_never_raises(setup, folder, capsys):
    store = RunStore(folder / "runs")
    runs = [setup.run_config("rcd", s) for s in range(2)] + [setup.run_config("kd", 1), setup.run_config("control", 1)]
    (store.path(runs[0]) / "manifest.json").write_text("{not json")                    # unreadable manifest
    m = json.loads((store.path(runs[1]) / "manifest.json").read_text())
    m["files"]["metrics.json"]["sha"] = m["files"]["metrics.json"].pop("sha256")        # an altered key
    (store.path(runs[1]) / "manifest.json").write_text(json.dumps(m))
    shutil.copy(store.path(runs[3]) / "manifest.json", store.path(runs[2]) / "manifest.json")  # another run's
    (store.path(runs[3]) / "metrics.json").unlink()                                    # an incomplete folder
    capsys.readouterr()
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--verify"]) == 1
    out = capsys.readouterr().out
    for r in runs:
        assert f"DAMAGED {r.hash}" in out
    assert "4 damaged" in out and "another run's manifest" in out and "incomplete" in out
    assert "not a manifest" in out and "Traceback" not in out
    assert driver_main(ENTRY + ["--results", str(folder), "--repair", "--train-only"]) == 0
    assert driver_main(["--scale", "smoke", "--results", str(folder), "--verify"]) == 0


def test_every_file_is_checked_once_per_version(setup, folder, monkeypatch):
    """The checksum of a file is computed once per store object and file version (size, mtime): reading a
    run's outputs twice hashes it once; a rewritten file is hashed again."""
    import kdlib.store as st

    calls = []
    real = st._sha256
    monkeypatch.setattr(st, "_sha256", lambda p: calls.append(p.name) or real(p))
    store = RunStore(folder / "runs")
    c = setup.run_config("control", 0)
    store.test_logits(c), store.test_logits(c)
    assert calls.count("outputs.npz") == 1 and calls.count("config.json") == 1


def test_a_damaged_run_is_named_by_the_evidence_and_the_appendix_not_fatal(setup, folder):
    """One hand-edited metrics.json: the summaries of the other entries load, the entry is left out and named
    with its repair command, and the appendix's damage table lists the run."""
    from kdlib.book.compute_ledger import damage_table
    from kdlib.book.evidence import BookEvidence

    store = RunStore(folder / "runs")
    kd = setup.run_config("kd", 1)
    p = store.path(kd) / "metrics.json"
    p.write_text(p.read_text().replace('"accuracy": 0.', '"accuracy": 1.', 1))
    ev = BookEvidence.load(None, "smoke", str(folder), [])
    assert "vowels-seqcnn-self" not in {s["id"] for s in ev.summaries["smoke"]}
    status = ev.status()
    assert "vowels-seqcnn-self: 1 damaged run(s) left out" in status and kd.label in status
    assert "--only vowels-seqcnn-self --repair --train-only" in status
    table = damage_table(ev.study, "smoke", str(folder))
    assert list(table["run"]) == [kd.label] and "checksum differs" in table["problem"].iloc[0]
