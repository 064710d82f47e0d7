"""A chapter is reused only when nothing it could read has changed: each input of the digest, changed
alone, makes it differ; the book phase reuses every chapter of an unchanged build, executes again the ones
an input reaches, and executes all of them when asked. No kernel runs here: `execute_chapter` is replaced by
one that writes the notebook it would write."""
import os

import nbformat
import pytest

from kdlib import load_study
from kdlib.book import build, reuse
from kdlib.results import ResultsFolder


def _files(tmp_path):
    root = tmp_path / "results"
    (root / "runs" / "abc").mkdir(parents=True)
    (root / "runs" / "abc" / "metrics.json").write_text('{"accuracy": 0.5}')
    (root / "training_log.json").write_text("{}")
    return root


def _bump_mtime(path):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.mark.parametrize("change", ["content", "mtime", "new file", "removed file"])
def test_a_changed_run_file_changes_the_folder_digest(tmp_path, change):
    root = _files(tmp_path)
    before = reuse.folder_digest(root)
    metrics = root / "runs" / "abc" / "metrics.json"
    if change == "content":
        metrics.write_text('{"accuracy": 0.6}')  # same size: the modification time still moves
        _bump_mtime(metrics)
    elif change == "mtime":
        _bump_mtime(metrics)
    elif change == "new file":
        (root / "runs" / "abc" / "outputs.npz").write_bytes(b"x")
    else:
        metrics.unlink()
    assert reuse.folder_digest(root) != before


def test_the_driver_log_locks_and_run_folders_in_flight_leave_the_digest_alone(tmp_path):
    root = _files(tmp_path)
    before = reuse.folder_digest(root, ("driver_log.json",))
    (root / "driver_log.json").write_text('{"chapters_seconds": {}}')  # rewritten by every build
    (root / "runs" / ".locks").mkdir()
    (root / "runs" / ".locks" / "abc").write_text("")
    (root / "runs" / ".tmp-def@host@1@x").mkdir()
    (root / "runs" / ".tmp-def@host@1@x" / "metrics.json").write_text("{}")
    assert reuse.folder_digest(root, ("driver_log.json",)) == before
    # a file of that name deeper down is data, not the log
    (root / "runs" / "abc" / "driver_log.json").write_text("{}")
    assert reuse.folder_digest(root, ("driver_log.json",)) != before


def _log_phase(root, entries):
    """A training phase as the driver logs it, having trained runs of `entries` (None: an old log naming none)."""
    import json

    path = root / "training_log.json"
    log = json.loads(path.read_text() or "{}") or {"phases": []}
    phase = {"id": f"p{len(log['phases'])}", "wall_seconds": 60.0}
    if entries is not None:
        phase["entries"] = {e: {"trained": 1, "seconds": 1.0} for e in entries}
    log["phases"].append(phase)
    path.write_text(json.dumps(log))


def test_an_entry_digest_follows_its_runs_and_the_folder_not_other_runs(tmp_path):
    root = _files(tmp_path)
    (root / "training_log.json").write_text('{"phases": []}')
    folder = ResultsFolder(root)
    (root / "runs" / "other").mkdir()
    (root / "runs" / "other" / "metrics.json").write_text("{}")

    def digest(runs=("abc", "missing")):
        return reuse.entry_digest(folder, "mine", runs)

    base = digest()

    def changed(edit) -> bool:
        edit()
        return digest() != base

    # another entry's run and the phase that trained it, the driver log and runs in flight: not read
    assert not changed(lambda: _bump_mtime(root / "runs" / "other" / "metrics.json"))
    assert not changed(lambda: (root / "runs" / "new-run").mkdir())
    assert not changed(lambda: _log_phase(root, ["another-entry"]))
    assert not changed(lambda: (root / "driver_log.json").write_text("{}"))
    assert not changed(lambda: (root / "runs" / ".tmp-missing@x").mkdir())
    assert digest(("missing", "abc", "abc")) == base  # a set of runs
    # each of these alone is read
    for edit in [lambda: _bump_mtime(root / "runs" / "abc" / "metrics.json"),    # one of its runs repaired
                 lambda: (root / "runs" / "missing").mkdir(),                       # a run of it stored
                 lambda: _log_phase(root, ["mine", "another-entry"]),              # a phase that trained it
                 lambda: _log_phase(root, None),                                    # one naming no entry
                 lambda: (root / "failed_runs.json").write_text("{}"),              # the folder's own files
                 lambda: (root / "notes.txt").write_text("a file nobody declared"),
                 lambda: (root / "runs" / "SEALED").write_text("sealed")]:           # the store's own files
        assert changed(edit)
        base = digest()
    assert digest(("abc",)) != base  # another set of runs


def test_code_digest_follows_each_source_file_and_the_git_version(tmp_path, monkeypatch):
    src = tmp_path / "kdlib"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    (src / "notes.txt").write_text("not code")
    monkeypatch.setattr(reuse, "SOURCES", (src,))
    monkeypatch.setattr("kdlib.provenance.code_version", lambda: "abc123")
    base = reuse.code_digest()
    (src / "notes.txt").write_text("still not code")
    assert reuse.code_digest() == base
    (src / "a.py").write_text("x = 2\n")  # an uncommitted edit: git's mark stays "-dirty"
    assert reuse.code_digest() != base
    (src / "a.py").write_text("x = 1\n")
    assert reuse.code_digest() == base
    monkeypatch.setattr("kdlib.provenance.code_version", lambda: "abc124")  # a commit (the appendix prints it)
    assert reuse.code_digest() != base


def test_the_chapter_digest_follows_each_of_its_own_inputs():
    args = {"build": "b", "chapter": "setup", "params": {"scale": "smoke", "n_seeds": 2}, "title": "T", "meta": {"runs": "r"}}
    base = reuse.chapter_digest(**args)
    for field, other in [("build", "b2"), ("chapter", "claims"), ("params", {"scale": "smoke", "n_seeds": 3}),
                         ("title", "T2"), ("meta", {"runs": "r2"})]:
        assert reuse.chapter_digest(**{**args, field: other}) != base, field
    assert not reuse.reusable({}, base) and not reuse.reusable({"inputs": "other"}, base)
    assert reuse.reusable({"inputs": base}, base)


@pytest.fixture
def phase(vowels_copy, tmp_path, monkeypatch):
    """The book phase of the trained vowels entry with a stand-in for papermill that records what it executes."""
    study = load_study()
    results = ResultsFolder(vowels_copy)
    chapters = [ch for ch in build.plan_chapters(study, "smoke", results) if ch.entry.id == "vowels-seqcnn-self"]
    executed = []

    def fake_execute(chapter, output, params, title, meta, verbose=False, out=None):
        executed.append(output.stem)
        nb = nbformat.v4.new_notebook()
        build.tidy_for_book(nb, title, {**meta, "seconds": 1.5})
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
        return 1.5

    monkeypatch.setattr(build, "execute_chapter", fake_execute)

    def run(device="cpu", rerun=False):
        executed.clear()
        timings, failed, reused = build.notebook_phase(study, "smoke", results, chapters, tmp_path / "book", [],
                                                       device, 1, False, rerun)
        assert not failed
        return set(executed), set(reused), timings

    run.fake = fake_execute

    finals = {n for part in ("results", "running") for n, _ in study.book_chapters(part)}
    return run, finals, results


def test_an_unchanged_build_reuses_every_chapter_and_keeps_its_time(phase):
    run, finals, _ = phase
    executed, reused, _ = run()
    assert executed == finals | {"vowels-seqcnn-self"} and not reused
    executed, reused, timings = run()
    assert not executed and reused == finals | {"smoke/vowels-seqcnn-self"}
    assert timings["smoke/vowels-seqcnn-self"] == 1.5  # the seconds it took when it was executed


def test_a_changed_parameter_executes_only_the_chapters_it_reaches(phase):
    run, finals, _ = phase
    run()
    executed, reused, _ = run(device="cuda")  # a setup chapter's parameter; the book's chapters do not take it
    assert executed == {"vowels-seqcnn-self"} and reused == finals


def test_a_run_of_another_entry_executes_only_the_books_chapters(phase):
    run, finals, results = phase
    run()
    other = results.runs_dir / "0123456789abcdef"  # a run another entry's training phase stored since,
    other.mkdir()
    (other / "metrics.json").write_text("{}")
    _log_phase(results.root, ["digits-mlp-self"])  # and the phase it logged
    executed, reused, _ = run()
    assert executed == finals and reused == {"smoke/vowels-seqcnn-self"}


def test_a_run_changed_in_the_store_executes_every_chapter(phase):
    run, finals, results = phase
    run()
    metrics = next(results.runs_dir.glob("*/metrics.json"))  # a run of the entry: its store holds no other
    _bump_mtime(metrics)  # e.g. a run repaired in place
    executed, reused, _ = run()
    assert executed == finals | {"vowels-seqcnn-self"} and not reused


def test_rerun_executes_every_chapter(phase):
    run, finals, _ = phase
    run()
    executed, reused, _ = run(rerun=True)
    assert executed == finals | {"vowels-seqcnn-self"} and not reused


def test_a_chapter_that_failed_after_a_good_one_is_executed_again(phase, monkeypatch):
    """A failed execution keeps the earlier notebook, whose recorded inputs are the earlier build's."""
    run, finals, results = phase
    run()
    _bump_mtime(next(results.runs_dir.glob("*/metrics.json")))

    def failing(*a, **k):
        raise RuntimeError("kernel died")

    monkeypatch.setattr(build, "execute_chapter", failing)
    with pytest.raises(AssertionError):  # every chapter failed (the stand-in asserts there were none)
        run()
    monkeypatch.setattr(build, "execute_chapter", run.fake)
    executed, reused, _ = run()
    assert executed == finals | {"vowels-seqcnn-self"} and not reused
