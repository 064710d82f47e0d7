"""Paired tests, effect sizes, correction and power limits against scipy and hand computation."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from kdlib import stats as S


def test_wilcoxon_matches_scipy_and_hand_rbc():
    x = np.array([0.80, 0.82, 0.85, 0.90, 0.70, 0.75, 0.81, 0.86])
    d = np.array([0.01, -0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08])
    w, p, r = S.wilcoxon_one_sided(x, x - d, "greater")
    ref = sps.wilcoxon(x, x - d, alternative="greater")
    assert p == pytest.approx(ref.pvalue)
    # ranks of |d|: 1..8; the only negative difference has rank 2 -> R+ = 34, R- = 2
    assert w == pytest.approx(34)
    assert r == pytest.approx((34 - 2) / 36)


def test_all_positive_differences_reach_the_minimum_p():
    x = np.arange(10.0)
    _, p, r = S.wilcoxon_one_sided(x + np.arange(1, 11) * 0.1, x, "greater")
    assert p == pytest.approx(2.0 ** -10) and r == pytest.approx(1.0)
    _, p_less, _ = S.wilcoxon_one_sided(x - 0.5, x, "less")
    assert p_less == pytest.approx(2.0 ** -10)


def test_identical_arms_give_p_one():
    assert S.wilcoxon_one_sided([1, 2, 3], [1, 2, 3], "greater") == (0.0, 1.0, 0.0)


def test_by_correction_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    c = 1 + 1 / 2 + 1 / 3 + 1 / 4
    order = np.sort(p)
    raw = [order[i] * 4 * c / (i + 1) for i in range(4)]
    adj_sorted = np.minimum.accumulate(raw[::-1])[::-1]
    adj_sorted = np.minimum(adj_sorted, 1)
    expected = adj_sorted[np.argsort(np.argsort(p))]
    np.testing.assert_allclose(sps.false_discovery_control(p, method="by"), expected)
    assert S.by_constant(4) == pytest.approx(c)


def test_power_limits():
    lim = S.power_limits(8, 24)
    assert lim["min_p"] == pytest.approx(1 / 256)
    # a lone minimal p among 24 tests: 24 * c(24) / 256 ~ 0.35 -> cannot survive BY
    assert lim["min_p_by_lone_test"] == pytest.approx(24 * S.by_constant(24) / 256)
    assert not lim["lone_test_can_survive"]
    assert lim["can_survive_correction"]  # only if all 24 reach the minimum
    assert not S.power_limits(4, 24)["can_survive_correction"]  # c(24)/16 > 0.05
    assert not S.power_limits(4, 1)["can_reach_significance"]  # 1/16 > 0.05
    assert S.power_limits(10, 8)["lone_test_can_survive"]


def _runs(n=10, shift=0.05, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        base = rng.uniform(0.7, 0.8)
        for arm, delta in (("control", 0.0), ("kd", shift), ("rcd", -shift)):
            v = base + delta + rng.normal(0, 0.001)
            rows.append({"arm": arm, "seed": s, "accuracy": v, "agreement": v, "loss": 1 - v})
    return pd.DataFrame(rows)


def test_paired_tests_table():
    t = S.paired_tests(_runs(), metrics=("accuracy", "agreement", "loss"))
    assert len(t) == 9 and set(t["comparison"]) == {"kd > control", "kd > rcd", "rcd > control", "kd < control",
                                                    "kd < rcd", "rcd < control"}
    kd_ctrl = t[(t.arm_a == "kd") & (t.arm_b == "control")]
    assert kd_ctrl["significant"].all() and (kd_ctrl["p"] == 2.0 ** -10).all()
    rcd_ctrl = t[(t.arm_a == "rcd") & (t.arm_b == "control")]
    assert not rcd_ctrl["significant"].any()  # rcd is worse, the one-sided test in the other direction
    np.testing.assert_allclose(t["p_by"], sps.false_discovery_control(t["p"], method="by"))
    assert (t["min_p"] == 2.0 ** -10).all()
    row = kd_ctrl[kd_ctrl.metric == "accuracy"].iloc[0]
    d = _runs()
    assert row["mean_a"] == pytest.approx(d[d.arm == "kd"]["accuracy"].mean())
    assert row["sem_a"] == pytest.approx(sps.sem(d[d.arm == "kd"]["accuracy"]))


def test_pingouin_rbc_sign_follows_the_alternative():
    t = S.paired_tests(_runs(), metrics=("loss",))
    assert (t[t.arm_a == "kd"]["rbc"] > 0).all()  # kd has lower loss: "kd < control" holds with r = +1
