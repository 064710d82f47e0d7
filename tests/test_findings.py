"""The landing page's findings: sentences and a figure computed from the stored runs (change a run, the
sentence changes), with headings that say which way the evidence points."""
import json

import pytest

from kdlib import load_study
from kdlib.book import findings
from kdlib.book.evidence import BookEvidence
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.results import ResultsFolder
from kdlib.store import RunStore, _write_manifest


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    study = load_study()
    root = tmp_path_factory.mktemp("findings") / "results"
    setups = [(n, study.setup(n, "smoke")) for n in ("digits-mlp-self", "vowels-seqcnn-self")]
    assert not LocalExecutor("cpu").run(collect_jobs(setups), ResultsFolder(root).store()).failed
    return root


def test_the_sentences_follow_from_the_runs_and_move_with_them(root, tmp_path):
    ev = BookEvidence.load(None, "smoke", str(root), [])
    rows = findings.headline_rows(ev)
    assert set(rows["id"]) == {"digits-mlp-self", "vowels-seqcnn-self"} and set(rows["reading"]) == {0.9, 0.1}
    text = findings.sentences(ev, rows)
    main = rows[rows["reading"] == 0.9]
    assert f"the gain is {main['gain_points'].median():+.1f} points at the median" in text[0]
    assert f"in {int(main['significant_transfer'].sum())} of 2 independent setups" in text[0]
    # one kd run's agreement changed (and its manifest rewritten, as a retrained run would have it): the median moves
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    cfg = ev.study.setup("vowels-seqcnn-self", "smoke")
    store = RunStore(copy / "runs")
    run = cfg.run_config("kd", 0)
    p = store.path(run) / "metrics.json"
    m = json.loads(p.read_text())
    m["agreement"] = max(0.0, m["agreement"] - 0.3)
    p.write_text(json.dumps(m))
    _write_manifest(store.path(run), ["config.json", "metrics.json", "provenance.json", "outputs.npz"])
    moved = findings.sentences(BookEvidence.load(None, "smoke", str(copy), []), findings.headline_rows(
        BookEvidence.load(None, "smoke", str(copy), [])))
    assert moved[0] != text[0]


def test_headings_follow_the_direction_of_the_evidence(root):
    ev = BookEvidence.load(None, "smoke", str(root), [])
    rows = findings.headline_rows(ev)
    none = rows.assign(significant_transfer=False)
    assert findings.sentences(ev, none)[0].startswith("**No significant transfer.**")
    every = rows.assign(significant_transfer=True, share_closed=0.1)
    assert findings.sentences(ev, every)[0].startswith("**Transfer is significant everywhere, and small in share.**")
    assert findings.sentences(ev, rows.iloc[0:0]) == [
        "No independent setup is complete in this build, so there is nothing to report yet."]


def test_the_box_and_figure_are_written(root, tmp_path):
    ev = BookEvidence.load(None, "smoke", str(root), [])
    path = findings.write(tmp_path, ev)
    text = path.read_text()
    assert text.startswith("````{admonition} The answer, computed from this build's runs") and text.rstrip().endswith("````")
    assert "```{figure} generated/findings.png" in text and (tmp_path / "findings.png").stat().st_size > 10_000


@pytest.mark.parametrize("neg,heading", [((0.3, 0.3, 0.3), "The teacher's errors transfer more"),
                                         ((0.3, 0.3, 0.1), "The teacher's errors transfer more"),
                                         ((0.3, 0.1, 0.1), "The teacher's right answers transfer more"),
                                         ((0.3, 0.3, 0.1, 0.1), "No consistent asymmetry")])
def test_the_asymmetry_heading_takes_a_side_only_with_two_thirds(neg, heading):
    """A+ share 0.2 everywhere; A- share above it in the setups given 0.3: the heading sides with errors from two
    thirds of the setups, with right answers at one third or fewer, and says neither in between."""
    import pandas as pd

    class Evidence:
        def readings(self):
            return (0.9,)

        summaries = {"s": [{"scale": "s", "id": f"e{i}", "kd_weight": 0.9, "objective": "hinton", "neg_share_closed": v,
                            "pos_share_closed": 0.2, "rcd_kd_equivalent": False, "kd_beats_rcd_accuracy": True}
                           for i, v in enumerate(neg)]}

    rows = pd.DataFrame({"scale": "s", "id": [f"e{i}" for i in range(len(neg))], "reading": 0.9,
                         "significant_transfer": True, "gain_points": 1.0, "share_closed": 0.1})
    assert findings.sentences(Evidence(), rows)[1].startswith(f"**{heading}")
