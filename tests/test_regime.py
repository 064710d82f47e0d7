"""The regime chapter's numbers: the t interval, Spearman's rho, the controls' mutual disagreement and the
share of headroom closed, each against a hand-computed case and scipy; its rows from a real smoke store;
the claims page's regime comparison written from the verdict matrix."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from kdlib import load_study
from kdlib.book.claims import regime_sentences
from kdlib.book.evidence import BookEvidence
from kdlib.book.regime import correlations, regime_rows
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.metrics import mutual_disagreement, share_closed
from kdlib.results import ResultsFolder
from kdlib.stats import mean_ci, spearman


def test_mean_ci_by_hand_and_against_scipy():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    x = np.random.default_rng(0).normal(size=10)
    ref = sps.t.interval(0.95, 9, loc=x.mean(), scale=sps.sem(x))
    assert mean_ci(x)[1:] == pytest.approx(ref)
    assert math.isnan(mean_ci([5.0])[1]) and mean_ci([5.0])[0] == 5.0


def test_spearman_by_hand_and_against_scipy():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45])["rho"] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == pytest.approx(-1.0)
    x, y = np.random.default_rng(1).normal(size=(2, 12))
    ref = sps.spearmanr(x, y)
    got = spearman(x, y)
    assert got["rho"] == pytest.approx(ref.statistic) and got["p"] == pytest.approx(ref.pvalue) and got["n"] == 12
    assert spearman([1, 2, np.nan, 4, 5], [2, 1, 3, 4, 5])["n"] == 4  # pairs with a NaN are left out
    assert math.isnan(spearman([1, 2], [1, 2])["rho"])


def test_mutual_disagreement_by_hand():
    def onehot(labels):
        return np.eye(3)[labels]

    a, b, c = onehot([0, 1, 2]), onehot([0, 1, 1]), onehot([1, 1, 2])
    # pairs: a-b differ on 1 of 3, a-c on 1 of 3, b-c on 2 of 3
    assert mutual_disagreement([a, b, c]) == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert mutual_disagreement([a, a]) == 0.0 and math.isnan(mutual_disagreement([a]))


def test_share_closed_by_hand():
    assert share_closed(0.9, 0.8) == pytest.approx(0.5)  # half of the control's 20 % disagreement
    assert share_closed(0.7, 0.8) == pytest.approx(-0.5)
    assert math.isnan(share_closed(1.0, 1.0))


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    study = load_study()
    root = tmp_path_factory.mktemp("regime") / "results"
    setups = [(n, study.setup(n, "smoke")) for n in ("digits-mlp-self", "vowels-seqcnn-self")]
    report = LocalExecutor("cpu").run(collect_jobs(setups), ResultsFolder(root).store())
    assert not report.failed
    return BookEvidence.load(None, "smoke", str(root), [])


def test_regime_rows_follow_from_the_stored_runs(evidence):
    rows = regime_rows(evidence)
    assert sorted(rows["id"]) == ["digits-mlp-self", "vowels-seqcnn-self"]  # incomplete entries left out
    store = evidence.stores["smoke"]
    for _, r in rows.iterrows():
        cfg = evidence.study.setup(r["id"], "smoke")
        kd = [store.metrics(cfg.run_config("kd", s))["agreement"] for s in range(cfg.n_seeds)]
        ctrl = [store.metrics(cfg.run_config("control", s))["agreement"] for s in range(cfg.n_seeds)]
        assert r["gain_points"] == pytest.approx(100 * (np.mean(kd) - np.mean(ctrl)))
        assert r["gain_lo"] <= r["gain_points"] <= r["gain_hi"]
        assert r["share_closed"] == pytest.approx((np.mean(kd) - np.mean(ctrl)) / (1 - np.mean(ctrl)))
        p = [store.test_logits(cfg.run_config("control", s)).argmax(1) for s in range(cfg.n_seeds)]
        assert r["control_mutual_disagreement"] == pytest.approx(100 * np.mean(p[0] != p[1]))
        assert not r["sweep"]
    # the other reading has its own rows
    assert len(regime_rows(evidence, 0.1)) == 2
    corr = correlations(rows)
    assert len(corr) == 4 and corr["n"].eq(2).all() and corr["rho"].isna().all()  # two setups: too few for a rho


def test_regime_sentences_compare_mid_with_full_claim_by_claim():
    matrix = pd.DataFrame({"statement": ["s1", "s2"], "mid, w=0.9": ["supported", "not supported"],
                           "full, w=0.9": ["supported", "supported"], "flips between readings": ["", ""]},
                          index=pd.Index([1, 2], name="claim"))
    text = regime_sentences(matrix)
    assert "claim 1: w=0.9: unchanged (supported)" in text
    assert "claim 2: w=0.9: **not supported -> supported**" in text
    assert "not complete yet" in regime_sentences(matrix.drop(columns=["full, w=0.9"]))


def test_interim_rows_show_the_seeds_with_all_four_arms_of_an_entry_still_training(tmp_path, monkeypatch):
    """An entry still training (study.yaml `pending:`) shows, per reading, exactly the seeds whose four arms are
    stored under that reading, each number read from its run: seed 1 lacks only its rcd run at w = 0.9, so it
    is shown at w = 0.1 and not at w = 0.9; an entry not pending is not shown."""
    from kdlib.book.regime import interim_rows
    from kdlib.store import RunStore

    study = load_study()
    cfg = study.setup("digits-mlp-self", "smoke")
    store = RunStore(tmp_path / "runs")
    skip = cfg.run_config("rcd", 1, kd_weight=0.9)
    report = LocalExecutor("cpu").run([j for j in collect_jobs([("d", cfg)]) if j.cfg != skip], store)
    assert not report.failed and not store.has(skip)
    ev = BookEvidence(study=study, scales=["smoke"], stores={"smoke": store})
    monkeypatch.setattr(type(study), "pending", lambda self, scale: [])
    assert interim_rows(ev, 0.9, scales=("smoke",)).empty  # nothing pending: nothing shown
    monkeypatch.setattr(type(study), "pending", lambda self, scale: ["digits-mlp-self"])
    assert list(interim_rows(ev, 0.9, scales=("smoke",))["seed"]) == [0]
    rows = interim_rows(ev, 0.1, scales=("smoke",))
    assert list(rows["seed"]) == [0, 1] and rows["n_seeds_planned"].eq(2).all()
    for _, r in rows.iterrows():
        m = {a: store.metrics(cfg.run_config(a, int(r["seed"]), **({"kd_weight": 0.1} if a in ("kd", "rcd") else {})))
             for a in ("teacher", "control", "kd", "rcd")}
        assert r["teacher_accuracy"] == pytest.approx(100 * m["teacher"]["accuracy"])
        assert r["rcd_accuracy"] == pytest.approx(100 * m["rcd"]["accuracy"])
        assert r["gain_points"] == pytest.approx(100 * (m["kd"]["agreement"] - m["control"]["agreement"]))
        assert r["share_closed"] == pytest.approx(share_closed(m["kd"]["agreement"], m["control"]["agreement"]))
        assert r["gain_on_errors"] == pytest.approx(100 * (m["kd"]["neg_agreement"] - m["control"]["neg_agreement"]))
