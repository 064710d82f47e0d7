"""Paired tests, effect sizes, correction and power limits against hand computation, brute-force
enumeration, pingouin and scipy; calibration of the whole pipeline under simulated null data."""
import itertools
import warnings

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sps

from kdlib import stats as S


def _brute_force_p(d, alternative):
    """p of W+ by enumerating all 2^n sign flips of d, ranks from scipy (midranks), zeros dropped."""
    d = np.asarray(d, float)
    d = d[d != 0]
    r = sps.rankdata(np.abs(d))
    obs = r[d > 0].sum()
    w = np.array(list(itertools.product((0, 1), repeat=len(d)))) @ r
    return float(np.mean(w >= obs - 1e-9) if alternative == "greater" else np.mean(w <= obs + 1e-9))


def _pingouin(x, y, alternative):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pg.wilcoxon(x, y, alternative=alternative)
    return float(res["W_val"].iloc[0]), float(res["p_val"].iloc[0]), float(res["RBC"].iloc[0])


def test_signed_rank_hand_case_with_ties_and_a_zero():
    # d = [0, 1, -2, 2, 3]: the zero is dropped; |d| = 1, 2, 2, 3 -> midranks 1, 2.5, 2.5, 4; W+ = 7.5.
    # The 16 equally likely W+ (sums of subsets of {1, 2.5, 2.5, 4}):
    #   0, 1, 2.5, 2.5, 4, 3.5, 3.5, 5, 5, 6.5, 6.5, 6, 7.5, 7.5, 9, 10
    # P(W+ >= 7.5) = 4/16; P(W+ <= 7.5) = 14/16; rbc = (7.5 - 2.5) / 10; min_p = P(W+ = 10) = 1/16.
    y = np.array([5.0, 5.0, 5.0, 5.0, 5.0])
    x = y + [0, 1, -2, 2, 3]
    r = S.signed_rank_test(x, y, "greater")
    assert r["W"] == r["w_plus"] == 7.5
    assert r["p"] == 4 / 16 and r["rbc"] == pytest.approx(0.5) and r["min_p"] == 1 / 16
    assert (r["n"], r["n_nonzero"], r["n_excluded"]) == (5, 4, 0)
    less = S.signed_rank_test(x, y, "less")
    assert less["p"] == 14 / 16 and less["rbc"] == pytest.approx(-0.5) and less["W"] == 7.5
    np.testing.assert_allclose(S.signed_rank_null([2, 5, 5, 8]),
                               np.bincount([0, 2, 5, 5, 8, 7, 7, 10, 10, 13, 13, 12, 15, 15, 18, 20]) / 16)


def test_signed_rank_hand_case_without_ties():
    # d = [1, 2, -3]: ranks 1, 2, 3, W+ = 3; subsets of {1, 2, 3} summing to >= 3: {3}, {1,2}, {1,3},
    # {2,3}, {1,2,3} -> p = 5/8; to <= 3: {}, {1}, {2}, {3}, {1,2} -> p = 5/8.
    r = S.signed_rank_test([1, 2, -3], [0, 0, 0], "greater")
    assert r["p"] == 5 / 8 and r["W"] == 3 and r["min_p"] == 1 / 8
    assert S.signed_rank_test([1, 2, -3], [0, 0, 0], "less")["p"] == 5 / 8


def test_signed_rank_equals_pingouin_where_pingouin_is_exact():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n = int(rng.integers(2, 51))
        x, y = rng.normal(size=n), rng.normal(size=n) + rng.normal(0, 0.5)
        for alt in ("greater", "less"):
            w, p, rbc = _pingouin(x, y, alt)
            r = S.signed_rank_test(x, y, alt)
            assert r["p"] == pytest.approx(p, rel=1e-12, abs=1e-15)
            assert r["W"] == w and r["rbc"] == pytest.approx(rbc, abs=1e-12)


def test_signed_rank_with_ties_and_zeros_equals_brute_force_and_scipy_permutation():
    # integer data: many exact ties and zeros. scipy (via pingouin) runs an exhaustive permutation
    # test for n <= 13 with ties, an independent exact reference.
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(2, 12))
        x, y = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)
        for alt in ("greater", "less"):
            r = S.signed_rank_test(x, y, alt)
            if np.all(x == y):
                assert r["p"] == 1.0 and r["rbc"] == 0.0 and r["n_nonzero"] == 0
                continue
            assert r["p"] == pytest.approx(_brute_force_p(x - y, alt), abs=1e-12)
            assert r["n_nonzero"] == int(np.sum(x != y))
            assert r["min_p"] == 2.0 ** -r["n_nonzero"]
            w, p, rbc = _pingouin(x, y, alt)
            assert r["p"] == pytest.approx(p, abs=1e-12) and r["W"] == w and r["rbc"] == pytest.approx(rbc)


def test_float_noise_does_not_break_ties_of_fractions():
    # 0.5 - 0.3 and 0.3 - 0.1 differ in the last bit: as counts out of 10 they are the same difference
    x, y = np.array([0.5, 0.3, 0.9, 0.7]), np.array([0.3, 0.1, 0.7, 0.8])
    assert len(set((x - y)[:3])) > 1
    r = S.signed_rank_test(x, y, "greater")
    # |d| = .2, .2, .2, .1 -> ranks 3, 3, 3, 1: W+ = 9 of 10
    assert r["W"] == 9 and r["p"] == pytest.approx(_brute_force_p([2, 2, 2, -1], "greater"))
    assert S.signed_rank_test([0.1 + 0.2], [0.3], "greater")["n_nonzero"] == 0


def test_nan_pairs_are_excluded_and_counted():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    y = np.array([0.0, 0.0, 0.0, np.nan, 0.0])
    r = S.signed_rank_test(x, y, "greater")
    assert (r["n"], r["n_excluded"], r["n_nonzero"]) == (3, 2, 3)
    assert r["p"] == 1 / 8
    empty = S.signed_rank_test([np.nan], [1.0], "greater")
    assert np.isnan(empty["p"]) and empty["n"] == 0 and empty["n_excluded"] == 1


def test_wilcoxon_wrapper_matches_scipy_and_hand_rbc():
    x = np.array([0.80, 0.82, 0.85, 0.90, 0.70, 0.75, 0.81, 0.86])
    d = np.array([0.01, -0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08])
    w, p, r = S.wilcoxon_one_sided(x, x - d, "greater")
    ref = sps.wilcoxon(x, x - d, alternative="greater")
    assert p == pytest.approx(ref.pvalue) and w == ref.statistic
    # ranks of |d|: 1..8; the only negative difference has rank 2 -> R+ = 34, R- = 2;
    # W+ >= 34 in 3 of 256 sign patterns (no negative, or only rank 1 or only rank 2 negative)
    assert w == pytest.approx(34) and p == pytest.approx(3 / 256)
    assert r == pytest.approx((34 - 2) / 36)


def test_all_positive_differences_reach_the_minimum_p():
    x = np.arange(10.0)
    _, p, r = S.wilcoxon_one_sided(x + np.arange(1, 11) * 0.1, x, "greater")
    assert p == 2.0 ** -10 and r == pytest.approx(1.0)
    _, p_less, _ = S.wilcoxon_one_sided(x - 0.5, x, "less")  # all |d| tied: still 2^-10
    assert p_less == 2.0 ** -10


def test_identical_arms_give_p_one():
    assert S.wilcoxon_one_sided([1, 2, 3], [1, 2, 3], "greater") == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="alternative"):
        S.signed_rank_test([1], [0], "two-sided")


def test_equivalence_test():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.8, 0.9, 12)
    close = base + rng.uniform(-0.002, 0.002, 12)
    e = S.equivalence_test(close, base, margin=0.01)
    assert e["equivalent"] and e["p"] == max(e["p_lower"], e["p_upper"]) == 2.0 ** -12
    assert e["mean_diff"] == pytest.approx(np.mean(close - base)) and e["n"] == 12
    shifted = S.equivalence_test(close + 0.02, base, margin=0.01)  # every difference above the margin
    assert not shifted["equivalent"] and shifted["p_upper"] == 1.0
    for data in ((close, base), (base, base), (close + 0.02, base)):
        z = S.equivalence_test(*data, margin=0.0)
        assert not z["equivalent"] and z["p"] >= 0.5
    # hand case: d = [.005, -.005, .02], margin .01 -> d + m = [.015, .005, .03] all > 0: p_lower = 1/8;
    # d - m = [-.005, -.015, .01]: ranks 1, 3, 2, W+ = 2, P(W+ <= 2) = 3/8 ({}, {1}, {2})
    h = S.equivalence_test([0.505, 0.495, 0.52], [0.5, 0.5, 0.5], margin=0.01)
    assert h["p_lower"] == 1 / 8 and h["p_upper"] == 3 / 8 and h["p"] == 3 / 8 and not h["equivalent"]
    assert h["min_p"] == 1 / 8
    with pytest.raises(ValueError):
        S.equivalence_test(base, base, margin=-0.01)


def test_by_adjust_hand_computed():
    # m = 4, c(4) = 25/12. Sorted p .01, .03, .04, .2 -> m c p_(i) / i = 1/12, 1/8, 1/9, 5/12;
    # running minimum from the top: 1/12, 1/9, 1/9, 5/12.
    p = np.array([0.01, 0.04, 0.03, 0.2])
    assert S.by_constant(4) == pytest.approx(25 / 12)
    np.testing.assert_allclose(S.by_adjust(p), [1 / 12, 1 / 9, 1 / 9, 5 / 12])
    # NaN is left out of the family (m = 3, c(3) = 11/6): .01 -> 3 (11/6) .01 = .055,
    # .03 -> min(3 (11/6) .03 / 2, .2 * 11/6) = .0825, .2 -> 11/30
    np.testing.assert_allclose(S.by_adjust([0.01, np.nan, 0.03, 0.2]), [0.055, np.nan, 0.0825, 11 / 30])
    np.testing.assert_allclose(S.by_adjust([0.9, 0.8]), [1.0, 1.0])  # capped at 1
    assert S.by_adjust([]).shape == (0,)


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


def test_reachable_counts_the_nonzero_differences_and_the_family():
    # a lone test (family of 1) with 4 non-zero differences: its best p is 2^-4 = 0.0625 > 0.05
    assert not S.reachable([0.0625], [0.0625])[0]
    assert S.reachable([0.5], [2.0 ** -5])[0]  # 5 non-zero differences could reach 1/32
    # family of 3 with the others at p = 1: by hand, BY gives 3 c(3) min_p = 5.5 min_p
    assert S.reachable([0.9, 1.0, 1.0], [2.0 ** -7, 1.0, 1.0])[0]        # 5.5 / 128 = 0.043
    assert not S.reachable([0.9, 1.0, 1.0], [2.0 ** -6, 1.0, 1.0])[0]    # 5.5 / 64 = 0.086
    # ... but with the others small too the same test can pass: BY ranks it among them (11/6 * 3/64 * 3/3)
    assert S.reachable([0.9, 2.0 ** -6, 2.0 ** -6], [2.0 ** -6] * 3)[0]
    assert list(S.reachable([np.nan, 0.01], [0.001, np.nan])) == [False, False]
    # a significant test is always reachable
    p = [0.001, 0.02, 0.3]
    sig = S.by_adjust(p) <= 0.05
    assert (S.reachable(p, [0.001, 0.001, 0.001]) >= sig).all()
    with pytest.raises(ValueError, match="shape"):
        S.reachable([0.1, 0.2], [0.1])


def test_paired_tests_mark_a_test_with_few_nonzero_differences_unreachable():
    # 10 complete pairs, 6 of them tied at zero: 4 non-zero differences, best one-sided p 1/16
    rows = []
    for s in range(10):
        rows += [{"arm": "control", "seed": s, "agreement": 0.9}, {"arm": "kd", "seed": s, "agreement": 0.9 + 0.01 * (s < 4)}]
    t = S.paired_tests(pd.DataFrame(rows), metrics=("agreement",), comparisons=(("kd", "control"),),
                       primary=[("agreement", "kd", "control")])
    row = t.iloc[0]
    assert row["n"] == 10 and row["n_nonzero"] == 4 and row["min_p"] == pytest.approx(1 / 16)
    assert not row["reachable"] and not row["significant"]


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
    assert (t["family"] == "exploratory").all() and (t["n_nonzero"] == 10).all() and (t["n_excluded"] == 0).all()
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
    assert row["W"] == 55 and row["rbc"] == 1.0


def test_paired_tests_families_exclusions_and_untestable_rows():
    d = _runs()
    d.loc[(d.arm == "kd") & (d.seed.isin([3, 7])), "agreement"] = np.nan  # e.g. A- undefined for a seed
    d.loc[d.arm == "rcd", "loss"] = np.nan  # nothing testable against rcd
    primary = [("agreement", "kd", "control"), ("accuracy", "kd", "control")]
    t = S.paired_tests(d, metrics=("accuracy", "agreement", "loss"), primary=primary)
    fam = t.set_index(["metric", "arm_a", "arm_b"])["family"]
    assert set(fam[fam == "primary"].index) == set(primary)
    agr = t[(t.metric == "agreement") & (t.arm_a == "kd") & (t.arm_b == "control")].iloc[0]
    assert (agr["n"], agr["n_excluded"], agr["n_nonzero"]) == (8, 2, 8)
    assert agr["p"] == 2.0 ** -8 and agr["min_p"] == 2.0 ** -8
    assert agr["mean_a"] == pytest.approx(d[(d.arm == "kd") & d.agreement.notna()]["agreement"].mean())
    # the primary family: p = 2^-8 and 2^-10, m = 2, c = 3/2 -> p_by = 2^-8 * 2 * 1.5 / 2 and
    # min(2^-10 * 3, 2^-8 * 1.5) = 2^-10 * 3
    prim = t[t.family == "primary"].set_index("metric")["p_by"]
    assert prim["agreement"] == pytest.approx(1.5 * 2.0 ** -8) and prim["accuracy"] == pytest.approx(3 * 2.0 ** -10)
    untestable = t[(t.metric == "loss") & (t.arm_b == "rcd") | (t.metric == "loss") & (t.arm_a == "rcd")]
    assert len(untestable) == 2 and untestable["p"].isna().all() and untestable["p_by"].isna().all()
    assert not untestable["significant"].any() and (untestable["n"] == 0).all()
    expl = t[(t.family == "exploratory") & t.p.notna()]
    np.testing.assert_allclose(expl["p_by"], sps.false_discovery_control(expl["p"], method="by"))


def test_pingouin_rbc_sign_follows_the_alternative():
    t = S.paired_tests(_runs(), metrics=("loss",))
    assert (t[t.arm_a == "kd"]["rbc"] > 0).all()  # kd has lower loss: "kd < control" holds with r = +1


def _null_values(rng, reps, n_seeds, n_metrics, n_arms=3, n_test=300):
    """reps x arms x seeds x metrics of null data with many ties: a count out of n_test, arms exchangeable
    (i.i.d. given the seed), seeds paired through a shared per-seed rate."""
    rate = rng.uniform(0.8, 0.97, size=(reps, 1, n_seeds, n_metrics))
    return rng.binomial(n_test, np.broadcast_to(rate, (reps, n_arms, n_seeds, n_metrics))) / n_test


def test_calibration_per_test_under_the_null():
    # 20,000 independent null tests of 10 seeds: the exact test's size is <= 5 % whatever the ties, so
    # the observed rate may exceed 0.05 only by Monte Carlo error: 3.5 SE = 3.5 sqrt(.05 .95 / 20000)
    # ~ 0.0054. The rate must also not be trivially small (a broken test giving p = 1 would pass).
    rng = np.random.default_rng(3)
    v = _null_values(rng, 10_000, 10, 1, n_arms=2)[..., 0]
    p = np.array([[S.signed_rank_test(a, b, alt)["p"] for alt in ("greater", "less")] for a, b in v]).ravel()
    rate, slack = np.mean(p <= S.ALPHA), 3.5 * np.sqrt(0.05 * 0.95 / p.size)
    assert 0.02 < rate <= S.ALPHA + slack


def _pipeline_rejections(rng, reps, n_seeds, primary):
    """Run paired_tests on `reps` null setups (3 arms, the 8 standard metrics = 24 tests); return, per
    replicate, whether any test of each family was significant and the raw p-values."""
    metrics = S.TEST_METRICS
    vals = _null_values(rng, reps, n_seeds, len(metrics))
    # neg_agreement (A-) undefined for a seed now and then, as when a teacher makes no test errors
    vals[..., metrics.index("neg_agreement")][rng.random((reps, 3, n_seeds)) < 0.05] = np.nan
    arm, seed = np.repeat(["control", "kd", "rcd"], n_seeds), np.tile(np.arange(n_seeds), 3)
    any_primary, any_exploratory, raw = [], [], []
    for v in vals:
        runs = pd.DataFrame(v.reshape(3 * n_seeds, -1), columns=metrics).assign(arm=arm, seed=seed)
        t = S.paired_tests(runs, metrics, S.COMPARISONS, primary=primary)
        assert len(t) == 24
        any_primary.append(t.loc[t.family == "primary", "significant"].any())
        any_exploratory.append(t.loc[t.family == "exploratory", "significant"].any())
        raw.append(t["p"].to_numpy())
    return np.array(any_primary), np.array(any_exploratory), np.concatenate(raw)


def test_calibration_family_wise_under_the_null():
    # Under the global null every rejection is false, so BY's FDR bound is a family-wise bound: the
    # rate of replicates with any significant test must be <= 5 %, up to 3 Monte Carlo SE
    # (3 sqrt(.05 .95 / reps)). With 10 seeds a 24-test family can barely reject at all
    # (24 c(24) 2^-10 > 0.05), so the 24-test family is also run with 20 seeds, where it can.
    rng = np.random.default_rng(4)
    primary = [("agreement", "kd", "control"), ("neg_agreement", "kd", "control"), ("agreement", "kd", "rcd")]
    reps = 500
    slack = 3 * np.sqrt(0.05 * 0.95 / reps)
    prim, expl, raw = _pipeline_rejections(rng, reps, 10, primary)
    assert prim.mean() <= S.ALPHA + slack and expl.mean() <= S.ALPHA + slack
    assert prim.any()  # the primary family can reject at 10 seeds (a lone 2^-10 gives p_by ~ 0.0054)
    # per test: raw p <= 0.05 at most 5 % of the time (rows of a replicate are dependent, so the slack
    # is that of reps independent draws, not of 24 reps)
    assert np.nanmean(raw <= S.ALPHA) <= S.ALPHA + slack
    # the same 24 tests as one family (what primary=None gives), at 10 seeds
    one_family = [(S.by_adjust(p) <= S.ALPHA).any() for p in raw.reshape(reps, 24)]
    assert np.mean(one_family) <= S.ALPHA + slack
    _, all24, _ = _pipeline_rejections(rng, 300, 20, primary=None)
    assert all24.mean() <= S.ALPHA + 3 * np.sqrt(0.05 * 0.95 / 300)
