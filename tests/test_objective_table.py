"""The cross-objective chapter's table, from a real smoke store: each objective beside Hinton's on the same
teachers and controls, the gain and its paired difference from Hinton's recomputed from the stored runs, one
BY family over the chapter, unfitted kd students named, and no comparison where the plan has no Hinton entry."""
import numpy as np
import pytest

from kdlib import load_study
from kdlib.book import objective_table as ot
from kdlib.book.evidence import BookEvidence
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.results import ResultsFolder
from kdlib.stats import by_adjust, signed_rank_test

ENTRIES = {"digits-mlp-standard": {}, "digits-mlp-standard-ls": {"objective": "ls", "objective_args": {"weight": 10.0}, "temperature": 2.0},
           "digits-mlp-standard-nkd": {"objective": "nkd", "temperature": 1.0}}


class _Entry:  # a plan entry as the study file gives one
    def __init__(self, id, params):
        self.id, self.setup, self.params, self.title = id, "digits-mlp-standard", params, id


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    study = load_study()
    root = tmp_path_factory.mktemp("objectives") / "results"
    setups = [(i, study.setup("digits-mlp-standard", "smoke", **p)) for i, p in ENTRIES.items()]
    report = LocalExecutor("cpu").run(collect_jobs(setups), ResultsFolder(root).store())
    assert not report.failed
    plan = [_Entry(i, p) for i, p in ENTRIES.items()]
    study.plan = lambda scale: plan  # this store's plan: the Hinton entry and two objectives on its teachers
    ev = BookEvidence(study=study, scales=["smoke"])
    from kdlib.book.setup_analysis import collect_summaries
    ev.stores["smoke"] = ResultsFolder(root).store()
    ev.summaries["smoke"], ev.missing["smoke"] = collect_summaries(study, "smoke", ev.stores["smoke"])
    return ev


def test_rows_follow_from_the_stored_runs(evidence):
    rows = ot.objective_rows(evidence)
    assert len(rows) == 6  # three objectives, two readings
    assert list(rows[rows.kd_weight == 0.9]["objective"]) == ["hinton", "ls", "nkd"]  # Hinton first in its group
    assert set(rows["base"]) == {"digits-mlp-standard"}
    store, study = evidence.stores["smoke"], evidence.study
    for _, r in rows.iterrows():
        cfg = study.setup("digits-mlp-standard", "smoke", **ENTRIES[r["id"]])
        n = cfg.n_seeds
        agree = lambda c, arm: np.array([store.metrics(c.run_config(arm, s, kd_weight=r["kd_weight"]) if arm == "kd"
                                                       else c.run_config(arm, s))["agreement"] for s in range(n)])
        kd, ctrl = agree(cfg, "kd"), agree(cfg, "control")
        assert r["gain_points"] == pytest.approx(100 * (kd - ctrl).mean())
        assert r["gain_lo"] <= r["gain_points"] <= r["gain_hi"]
        assert r["p_transfer"] == pytest.approx(signed_rank_test(100 * (kd - ctrl), np.zeros(n), "greater")["p"])
        if r["objective"] == "hinton":
            assert np.isnan(r["vs_hinton"]) and np.isnan(r["p_more"])
        else:  # paired by seed on the shared controls: kd against Hinton's kd
            base = study.setup("digits-mlp-standard", "smoke")
            assert r["vs_hinton"] == pytest.approx(100 * (kd - agree(base, "kd")).mean())
    # one family: every finite p of the chapter, adjusted together
    raw = np.concatenate([rows[c].to_numpy(float) for c, _ in ot.TESTS])
    adjusted = np.concatenate([rows[f"{c}_by"].to_numpy(float) for c, _ in ot.TESTS])
    np.testing.assert_allclose(adjusted, by_adjust(raw))
    assert np.isfinite(raw).sum() == 6 * 3 + 4 * 2  # three tests per row, two more per non-Hinton row


def test_labels_and_findings_name_what_differs(evidence):
    rows = ot.objective_rows(evidence)
    assert [ot.label(r) for _, r in rows[rows.kd_weight == 0.9].iterrows()] == ["Hinton (T 4)", "LS (weight 10, T 2)", "NKD (gamma 1.5, T 1)"]
    text = ot.findings(rows)
    assert len(text) == 2 and text[0].startswith("**smoke: digits-mlp-standard, w = 0.9.**")
    assert "of 2" in text[0] and "Significant transfer (kd > control):" in text[0]
    # a kd student under the fitted threshold is named with its training accuracy; at threshold 0 none is
    flagged = rows.assign(fitted_train_accuracy=101.0)
    flagged["kd_unfitted"] = True
    assert "kd students not fitted (below 101 % training accuracy)" in ot.findings(flagged)[0]
    fig = ot.figure(rows)
    assert len(fig.axes) == 2


def test_an_objective_without_a_hinton_entry_on_its_teachers_is_shown_alone(evidence):
    ev = BookEvidence(study=evidence.study, scales=["smoke"], stores=evidence.stores,
                      summaries={"smoke": [s for s in evidence.summaries["smoke"] if s["objective"] != "hinton"]})
    rows = ot.objective_rows(ev)
    assert set(rows["objective"]) == {"ls", "nkd"} and rows["base"].eq("").all() and rows["p_more"].isna().all()
    assert "No Hinton entry on these teachers in this plan" in ot.findings(rows)[0]
