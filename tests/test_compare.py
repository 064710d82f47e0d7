"""`--compare-with OTHER`: two stores of one scale side by side, entry by entry and verdict by verdict."""
import json
import shutil
import subprocess

import pytest

from kdlib.compare import (
    AliasedStore,
    StoreSummaries,
    compared_text,
    differing_runs,
    entry_table,
    revision_commit,
    revision_folder,
    verdict_changes,
)
from kdlib.config import ConfigError
from kdlib.driver import main as driver_main
from kdlib.store import RunStore, _write_manifest
from tests.conftest import VOWELS_ENTRY

ENTRY = [a for a in VOWELS_ENTRY if a not in ("--workers", "1")]


def _kd_run(setup):
    return next(c for c in setup.runs() if c.arm == "kd" and c.seed == 0 and c.kd_weight == setup.kd_weight)


def test_a_store_compared_with_its_copy_has_nothing_that_differs(vowels_results, vowels_copy, capsys):
    assert driver_main(ENTRY + ["--results", str(vowels_results), "--compare-with", str(vowels_copy)]) == 0
    out = capsys.readouterr().out
    assert "compare: vowels-seqcnn-self: its" in out and "runs are the same in both stores" in out
    assert "identical, claim by claim" in out and "CHANGED" not in out


def test_a_run_whose_results_changed_is_named_and_its_numbers_shown(vowels_results, vowels_copy, vowels_setup, capsys):
    """One kd run's agreement moved in the copy (its manifest resealed, so it is a whole run): only that entry's
    table appears, with the kd agreement gain of each store."""
    kd = _changed_copy(vowels_copy, vowels_setup)
    assert differing_runs(vowels_setup, RunStore(vowels_results / "runs"), RunStore(vowels_copy / "runs")) == [kd.hash]

    driver_main(ENTRY + ["--results", str(vowels_results), "--compare-with", str(vowels_copy)])
    out = capsys.readouterr().out
    assert f"compare: vowels-seqcnn-self: 1 of its {len(vowels_setup.runs())} runs differ" in out
    gain_row = next(line for line in out.splitlines() if "kd - control agreement (points)" in line)
    n_seeds = vowels_setup.n_seeds
    assert f"{50 / n_seeds:+.2f}" in gain_row  # this store's mean gain is 50 points over the seeds above the other's


def test_entry_table_reads_each_test_in_both_stores():
    a = {"agreement_gain_points": 3.0, "significant_transfer": True, "negative_transfer_p": 0.5,
         "teacher_accuracy": 0.9, "asymmetry_p": 0.01}
    b = {"agreement_gain_points": 1.0, "significant_transfer": False, "negative_transfer_p": 0.01,
         "teacher_accuracy": 0.95, "asymmetry_p": 0.02}
    t = entry_table(a, b).set_index("quantity")
    assert t.columns.tolist() == ["this store", "other", "this store - other", "reading"]
    assert t.loc["kd - control agreement (points)"].tolist() == ["+3.00", "+1.00", "+2.00",
                                                                  "CHANGED: significant here only"]
    assert t.loc["kd less teacher-like than control (one-sided p)", "reading"] == \
        "CHANGED: significant in the other only"
    assert t.loc["errors transfer more than correct answers (p)", "reading"] == "significant in both"
    assert t.loc["teacher test accuracy"].tolist() == ["90.00 %", "95.00 %", "-5.00 pts", ""]
    errors = t.loc["kd gain on the teacher's errors (points)"]  # absent from both: no reading to compare
    assert errors["this store"] == "n/a" and errors["reading"] == "not computed"
    a["rcd_kd_equivalence_p"] = 0.01  # a test computed in one store only
    assert entry_table(a, b).set_index("quantity").loc["rcd and kd accuracy equivalent (TOST p)", "reading"] == \
        "computed in this store only"


def test_verdicts_of_a_store_and_its_copy_are_identical(vowels_results, vowels_setup):
    from kdlib import load_study
    from kdlib.book.setup_analysis import collect_summaries

    sums, missing = collect_summaries(load_study(), "smoke", RunStore(vowels_results / "runs"))
    same = verdict_changes(StoreSummaries(sums, missing), StoreSummaries([dict(s) for s in sums], missing),
                           [vowels_setup.kd_weight])
    assert (same["same"] == "yes").all() and len(same) == 7


def test_an_entry_complete_in_one_store_only_counts_on_both_sides(monkeypatch):
    """A replica of one entry against the whole store: the entries it lacks are the other's on both sides, so a
    verdict moves only through the entries both hold."""
    import pandas as pd

    def verdicts(summaries):  # a verdict that names the evidence it was given
        return pd.DataFrame({"claim": [1], "verdict": [",".join(sorted(f"{s['id']}={s['g']}" for s in summaries))]})

    monkeypatch.setattr("kdlib.book.claims.verdicts", verdicts)
    x1, x2, y = ({"id": "x", "kd_weight": 0.9, "g": 1}, {"id": "x", "kd_weight": 0.9, "g": 2},
                 {"id": "y", "kd_weight": 0.9, "g": 5})
    replica, whole = StoreSummaries([x1], ["y"]), StoreSummaries([x1, y], [])
    row = verdict_changes(replica, whole, [0.9]).iloc[0]
    assert row["this store"] == row["other"] == "x=1,y=5" and row["same"] == "yes"
    row = verdict_changes(StoreSummaries([x2], ["y"]), whole, [0.9]).iloc[0]
    assert (row["this store"], row["other"], row["same"]) == ("x=2,y=5", "x=1,y=5", "CHANGED")


def test_an_aliased_store_reads_the_older_configs_run():
    class Store:
        def has(self, h):
            return h == "old"

        def metrics(self, h):
            return {"h": h}

    s = AliasedStore(Store(), {"new": {"stored_hash": "old", "fields": ["data_args"]}})
    assert s.has("new") and s.metrics("new") == {"h": "old"} and s.fields == {"new": ["data_args"]}
    assert s.has("old") and not s.has("other")  # a run not aliased is read under its own hash


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_a_git_revision_of_the_results_folder_is_extracted(tmp_path):
    repo = tmp_path / "repo"
    (repo / "results" / "x" / "runs" / "r1").mkdir(parents=True)
    (repo / "results" / "x" / "runs" / "r1" / "metrics.json").write_text('{"a": 1}')
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    _git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "one")
    (repo / "results" / "x" / "runs" / "r1" / "metrics.json").write_text('{"a": 2}')  # the work tree moved on
    got = revision_folder("HEAD", repo / "results" / "x", tmp_path / "out", repo=repo)
    assert (got / "runs" / "r1" / "metrics.json").read_text() == '{"a": 1}'
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True)
    assert revision_commit("HEAD", repo=repo) == head.stdout.strip() and revision_commit("nosuchrev", repo=repo) is None
    assert compared_text({"compared_with": "HEAD", "commit": "abc123"}) == "HEAD (abc123)"
    assert compared_text({"compared_with": "/some/folder", "commit": None}) == "/some/folder"
    with pytest.raises(ConfigError, match="'nosuchrev': neither a folder nor a git revision"):
        revision_folder("nosuchrev", repo / "results" / "x", tmp_path / "out2", repo=repo)
    with pytest.raises(ConfigError, match="is not inside the repository"):
        revision_folder("HEAD", tmp_path / "elsewhere", tmp_path / "out3", repo=repo)


def test_compare_is_a_step_of_its_own(vowels_results, capsys):
    assert driver_main(ENTRY + ["--results", str(vowels_results), "--compare-with", "x", "--verify"]) == 2
    assert "--verify, --seal, --reproduce and --compare-with are separate steps" in capsys.readouterr().err


def _changed_copy(vowels_copy, vowels_setup):
    """The copy with one kd run's agreement moved (resealed): a store whose entry differs in one run."""
    store = RunStore(vowels_copy / "runs")
    kd = _kd_run(vowels_setup)
    metrics_file = store.path(kd) / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["agreement"] -= 0.5
    metrics_file.write_text(json.dumps(metrics))
    _write_manifest(store.path(kd), json.loads((store.path(kd) / "manifest.json").read_text())["files"])
    return kd


def test_a_recorded_comparison_is_shown_by_the_chapter_while_its_runs_stay(vowels_copy, vowels_results, vowels_setup,
                                                                          tmp_path, capsys):
    from kdlib import load_study
    from kdlib.book.compute_ledger import replications_table
    from kdlib.book.setup_chapter import ChapterSetup, SetupView
    from kdlib.results import ResultsFolder

    _changed_copy(vowels_copy, vowels_setup)
    mine = tmp_path / "mine"
    shutil.copytree(vowels_results, mine)
    assert driver_main(ENTRY + ["--results", str(mine), "--compare-with", str(vowels_copy), "--record"]) == 0
    assert f"recorded in {mine / 'replications.json'}" in capsys.readouterr().out
    rec = ResultsFolder(mine).replications()["vowels-seqcnn-self"]
    assert rec["differing"] == 1 and rec["compared_with"] == str(vowels_copy.resolve())
    assert set(rec["readings"]) == {f"{w:g}" for w in vowels_setup.kd_weights}

    chapter = ChapterSetup(vowels_setup, "vowels-seqcnn-self", ResultsFolder(mine))
    view = SetupView.read(chapter)
    shown, why = view.replication()
    assert shown == rec and why == ""
    text = view.replication_text(shown)
    assert "1 of them differ" in text and "identical, claim by claim" in text and "--record`" in text
    table = view.replication_tables(shown)[f"{vowels_setup.kd_weight:g}"]
    assert table.columns.tolist() == ["quantity", "these runs", "compared runs", "these runs - compared runs", "reading"]

    # the appendix's table of every recorded comparison
    study = load_study()
    row = replications_table(study, ["smoke"], str(mine)).iloc[0]
    assert (row["entry"], row["runs differing"], row["verdicts"], row["current"]) == \
        ("vowels-seqcnn-self", f"1 of {len(vowels_setup.runs())}", "identical", "yes")

    # one of this store's runs retrained (its results changed): the record no longer describes the runs
    _changed_copy(mine, vowels_setup)
    shown, why = SetupView.read(chapter).replication()
    assert shown is None and "describes runs since replaced" in why
    assert replications_table(study, ["smoke"], str(mine)).iloc[0]["current"].startswith("no: the entry's runs changed")


def test_record_needs_a_comparison(vowels_results, capsys):
    assert driver_main(ENTRY + ["--results", str(vowels_results), "--record"]) == 2
    assert "--record writes what --compare-with finds" in capsys.readouterr().err
