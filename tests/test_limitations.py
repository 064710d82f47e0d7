"""The limitations page's numbers: teachers from a real smoke store, the study file's reconstructed items,
the p-value floor by hand, and the entries that never ran."""
import pytest

from kdlib import load_study
from kdlib.book import limitations as lim
from kdlib.book.evidence import BookEvidence
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.results import ResultsFolder


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    study = load_study()
    root = tmp_path_factory.mktemp("limits") / "results"
    setups = [("digits-mlp-self", study.setup("digits-mlp-self", "smoke"))]
    assert not LocalExecutor("cpu").run(collect_jobs(setups), ResultsFolder(root).store()).failed
    return BookEvidence.load(None, "smoke", str(root), [])


def test_teacher_table_reads_each_teacher_once(evidence):
    t = lim.teacher_table(evidence)
    store, cfg = evidence.stores["smoke"], evidence.study.setup("digits-mlp-self", "smoke")
    accs = [store.metrics(cfg.teacher_run(s))["accuracy"] for s in range(cfg.n_seeds)]
    row = t[t.entry == "digits-mlp-self"].iloc[0]
    assert len(t[t.entry == "digits-mlp-self"]) == 1 and row["teacher test (%)"] == pytest.approx(100 * sum(accs) / len(accs))
    assert row["fits its training set"] in ("yes", "no (below 99 %)")


def test_reconstructed_items_are_the_study_files():
    study = load_study()
    items = lim.reconstructed_items(study)
    assert len(items) > 10 and items["what the study file says"].str.startswith("reconstructed").all()
    spec = study.setup_specs["cifar10-full-self"]["provenance"]
    assert {"architecture", "hyperparameters"} <= set(items[items.setup == "cifar10-full-self"]["item"])
    assert not str(spec["kind"]).startswith("reconstructed") and "kind" not in set(items[items.setup == "cifar10-full-self"]["item"])


def test_the_p_floor_by_hand():
    text = lim.power_sentence(10, 3)
    # BY with m = 3: c(3) = 1 + 1/2 + 1/3 = 11/6; all three at 2^-10: 3 (11/6) 2^-10 / 3 = 0.00179; alone: x3
    assert "2^-10 = 0.00098" in text and "0.0018 when every test" in text and "0.0054 for a lone test" in text


def test_never_run_names_why(evidence):
    missing = lim.never_run(evidence.study, evidence)
    paper = missing[missing.scale == "paper"]
    assert len(paper) and (paper["why"].isin(["needs a GPU (the paper scale)", "still training (pending in study.yaml)"])).all()
    smoke = missing[missing.scale == "smoke"]
    assert "digits-mlp-self" not in set(smoke["entry"]) and (smoke["why"] == "not run in this build").all()
