"""Paired hypothesis tests across seeds (PROTOCOL.md, "Hypothesis tests" and "Amendments").

For each metric and pair of arms: a one-sided Wilcoxon signed-rank test on the per-seed values paired by
seed index, in the direction "more teacher-like" or "better", with the matched-pairs rank-biserial
correlation as effect size. The test is exact for any n, ties included: the null distribution of W+
under independent fair sign flips of the observed (mid)ranks is built by dynamic programming
(`signed_rank_test`); where pingouin is exact (no ties, no zeros, n <= 50) its p-values are the same.
Benjamini-Yekutieli (BY) correction runs separately over a declared primary family and over the
exploratory rest (`paired_tests`). `equivalence_test` is the paired TOST built on the same test.
With n non-zero differences a one-sided test cannot go below p = 2^-n, which limits what can survive
the correction: `power_limits` says how far, and `reachable` says, test by test, whether the data a test
kept (its non-zero differences) could have passed the correction its family gave.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import numpy as np
import pandas as pd
from scipy import stats as sps

# Direction in which the first arm counts as more teacher-like (or better) than the second.
DIRECTIONS = {
    "accuracy": "greater", "loss": "less", "ece": "less",
    "agreement": "greater", "js_divergence": "less", "activation_distance": "less",
    "kl_teacher_student": "less", "pos_agreement": "greater", "neg_agreement": "greater",
    "backdoor_asr": "greater",  # more teacher-like: the student inherits the teacher's backdoor
    "backdoor_lift": "greater",  # ... beyond its base rate of predicting the target class
    "mi": "greater", "nmi": "greater", "cka": "greater",
}
TEST_METRICS = ("accuracy", "loss", "agreement", "js_divergence", "activation_distance",
                "kl_teacher_student", "pos_agreement", "neg_agreement")
COMPARISONS = (("kd", "control"), ("kd", "rcd"), ("rcd", "control"))
ALPHA = 0.05
# Differences of fractions such as k/N carry float noise (0.5 - 0.3 != 0.3 - 0.1), which would break
# true ties and hide true zeros: |d| within RTOL of the largest |d| count as tied, and a difference
# within RTOL of its pair's magnitude counts as zero.
RTOL = 1e-9


def measured(runs: pd.DataFrame, metric: str) -> bool:
    """The runs have the metric and at least one value of it (older runs lack MI / CKA, clean ones the backdoor's)."""
    return metric in runs and bool(runs[metric].notna().any())


def metrics_for(runs: pd.DataFrame) -> tuple:
    """The tested metrics of a setup: the protocol's, plus the backdoor's success rate and lift, MI, NMI and
    CKA where the runs have them."""
    extra = ("backdoor_asr", "backdoor_lift") if measured(runs, "backdoor_asr") else ()
    return TEST_METRICS + extra + tuple(m for m in ("mi", "nmi", "cka") if measured(runs, m))


def sem(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): the Student t interval of the mean of paired per-seed differences. NaN bounds
    for fewer than two values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = float(sps.t.ppf(0.5 + confidence / 2, len(v) - 1)) * sem(v)
    return m, m - half, m + half


def spearman(x, y) -> dict:
    """Spearman's rank correlation with its two-sided p (scipy; exact permutation p for n <= 9 would differ
    little and is not used), over the pairs where both values are finite."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return {"rho": float("nan"), "p": float("nan"), "n": int(ok.sum())}
    r = sps.spearmanr(x[ok], y[ok])
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": int(ok.sum())}


def by_constant(m: int) -> float:
    """c(m) = sum_{i=1..m} 1/i, the Benjamini-Yekutieli penalty for arbitrary dependence."""
    return float(sum(1.0 / i for i in range(1, m + 1)))


def by_adjust(p) -> np.ndarray:
    """BY-adjusted p-values, min(1, min_{j >= i} m c(m) p_(j) / j), over the finite entries only
    (m counts them); NaN stays NaN, so an untestable comparison does not enlarge the family."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = sps.false_discovery_control(p[ok], method="by")
    return out


def min_attainable_p(n: int) -> float:
    """Smallest one-sided exact signed-rank p with n non-zero paired differences: 2^-n (ties or not,
    since only all n signs agreeing reaches the extreme rank sum)."""
    return 2.0 ** -n


def power_limits(n_seeds: int, n_tests: int, alpha: float = ALPHA) -> dict:
    """What the seed count allows after BY correction over `n_tests` tests, if no difference is zero.

    min_p: 2^-n_seeds, the smallest one-sided p of one test.
    min_p_by_best_case: every test of the family reaches min_p; BY then gives c(m) 2^-n.
    min_p_by_lone_test: only one test reaches it and the rest are null (p near 1); BY gives m c(m) 2^-n.
    can_reach_significance / can_survive_correction / lone_test_can_survive: each of these <= alpha."""
    p, c = min_attainable_p(n_seeds), by_constant(n_tests)
    best, lone = min(1.0, c * p), min(1.0, n_tests * c * p)
    return {"n_seeds": n_seeds, "n_tests": n_tests, "alpha": alpha, "min_p": p,
            "min_p_by_best_case": best, "min_p_by_lone_test": lone,
            "can_reach_significance": bool(p <= alpha), "can_survive_correction": bool(best <= alpha),
            "lone_test_can_survive": bool(lone <= alpha)}


def reachable(p, min_p, alpha: float = ALPHA) -> np.ndarray:
    """Per test of one BY family: could it be significant if its own data took their most extreme outcome
    (p = its min_p, which counts only the non-zero differences the signed-rank test keeps) while every
    other test of the family kept its observed p? False where p or min_p is NaN. A significant test is
    always reachable (BY is monotone), so "not testable" can never hide a significant result."""
    p, min_p = np.asarray(p, dtype=float), np.asarray(min_p, dtype=float)
    if p.shape != min_p.shape:
        raise ValueError(f"p and min_p differ in shape: {p.shape} and {min_p.shape}")
    out = np.zeros(p.shape, dtype=bool)
    for i in np.flatnonzero(np.isfinite(p) & np.isfinite(min_p)):
        q = p.copy()
        q[i] = min(min_p[i], p[i])
        out[i] = bool(by_adjust(q)[i] <= alpha)
    return out


def _doubled_midranks(a: np.ndarray) -> np.ndarray:
    """2 x the midranks of a (>= 0): integers, since a tie group over positions i..j has midrank (i+j)/2."""
    order = np.argsort(a, kind="stable")
    s = a[order]
    new = np.r_[True, np.diff(s) > RTOL * (s[-1] if len(s) else 0.0)]
    starts = np.flatnonzero(new) + 1  # 1-based first position of each tie group
    ends = np.r_[starts[1:] - 1, len(s)]
    r2 = np.empty(len(a), dtype=np.int64)
    r2[order] = (starts + ends)[np.cumsum(new) - 1]
    return r2


def signed_rank_null(r2) -> np.ndarray:
    """Exact null pmf of 2 W+ for doubled ranks r2 under independent fair sign flips: entry k is
    P(2 W+ = k). Built one rank at a time (each either adds r or not, with probability 1/2), so it is
    exact with ties for any n; entries are multiples of 2^-n, exact in float64 up to n = 53."""
    r2 = np.asarray(r2, dtype=np.int64)
    pmf = np.zeros(int(r2.sum()) + 1)
    pmf[0], top = 1.0, 0
    for r in r2:
        new = 0.5 * pmf
        new[r:r + top + 1] += 0.5 * pmf[:top + 1]
        pmf, top = new, top + int(r)
    return pmf


def signed_rank_test(x, y, alternative: str) -> dict:
    """Exact one-sided Wilcoxon signed-rank test of x vs y, paired (differences d = x - y).

    Pairs with a NaN are removed (n_excluded), zero differences dropped (pingouin's and scipy's default
    "wilcox" method), |d| ranked with midranks for ties (zeros and ties up to RTOL). alternative "greater": p = P(W+ >= observed),
    "less": p = P(W+ <= observed), under the exact null given the observed ranks.
    Keys: W (pingouin's W_val: scipy's one-sided statistic, the rank sum of the positive differences),
    w_plus (the same), p, rbc (matched-pairs rank-biserial correlation, r+/R - r-/R for "greater" and
    the reverse for "less"), n (complete pairs), n_nonzero, n_excluded, min_p (the null probability of
    the most extreme W+, 2^-n_nonzero). No non-zero difference: p = 1, rbc = 0; no complete pair: p NaN."""
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {len(x)} and {len(y)}")
    d = x - y
    keep = ~(np.isnan(x) | np.isnan(y) | np.isnan(d))
    n, n_excluded = int(keep.sum()), int((~keep).sum())
    x, y, d = x[keep], y[keep], d[keep]
    d = d[np.abs(d) > RTOL * np.maximum(np.abs(x), np.abs(y))]
    n_nonzero = len(d)
    out = {"W": 0.0, "w_plus": 0.0, "p": 1.0 if n else float("nan"), "rbc": 0.0, "n": n,
           "n_nonzero": n_nonzero, "n_excluded": n_excluded, "min_p": 1.0}
    if not n_nonzero:
        return out
    r2 = _doubled_midranks(np.abs(d))
    w2 = int(r2[d > 0].sum())
    pmf = signed_rank_null(r2)
    p = pmf[w2:].sum() if alternative == "greater" else pmf[:w2 + 1].sum()
    total = int(r2.sum())
    rbc = (2 * w2 - total) / total  # (r+ - r-) / (r+ + r-)
    out.update({"W": w2 / 2, "w_plus": w2 / 2, "p": float(min(1.0, p)),
                "rbc": float(rbc if alternative == "greater" else -rbc),
                "min_p": float(pmf[-1] if alternative == "greater" else pmf[0])})
    return out


def wilcoxon_one_sided(x, y, alternative: str) -> tuple[float, float, float]:
    """(W, p, rank-biserial r) of x vs y, paired: `signed_rank_test` in short."""
    r = signed_rank_test(x, y, alternative)
    return r["W"], r["p"], r["rbc"]


def equivalence_test(x, y, margin: float, alpha: float = ALPHA) -> dict:
    """Paired two one-sided tests (TOST) with the exact signed-rank test: is x - y within +-margin?

    H0: the location of x - y is <= -margin or >= margin; H1: it lies within the margin.
    p_lower tests x - y + margin > 0, p_upper tests x - y - margin < 0, p = max of the two, equivalent =
    p <= alpha. With margin 0 the two one-sided p-values sum to more than 1, so it never passes.
    Keys: mean_diff, margin, p_lower, p_upper, p, equivalent, alpha, n, n_excluded, min_p (the smallest
    p the data could give, max of the two tests' min_p)."""
    if not margin >= 0:
        raise ValueError(f"equivalence margin must be >= 0, got {margin!r}")
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    lo = signed_rank_test(x + margin, y, "greater")
    hi = signed_rank_test(x - margin, y, "less")
    d = x - y
    d = d[~np.isnan(d)]
    p = max(lo["p"], hi["p"])
    return {"mean_diff": float(d.mean()) if len(d) else float("nan"), "margin": float(margin),
            "p_lower": lo["p"], "p_upper": hi["p"], "p": p, "equivalent": bool(p <= alpha), "alpha": alpha,
            "n": lo["n"], "n_excluded": lo["n_excluded"], "min_p": max(lo["min_p"], hi["min_p"])}


COLUMNS = ["metric", "comparison", "arm_a", "arm_b", "alternative", "family", "n", "n_nonzero", "n_excluded",
           "mean_a", "sem_a", "mean_b", "sem_b", "mean_diff", "W", "p", "p_by", "rbc", "significant", "min_p",
           "reachable"]


def paired_tests(runs: pd.DataFrame, metrics=TEST_METRICS, comparisons=COMPARISONS,
                 alpha: float = ALPHA, primary: Optional[Iterable] = None) -> pd.DataFrame:
    """Tidy table of the tests of one setup. `runs` has one row per (arm, seed) and a column per metric.

    Each test pairs the seeds both arms have; a seed where either value is NaN is left out of that test
    only (n_excluded), and n, the means, SEMs and mean_diff describe the n pairs tested. `primary`:
    (metric, arm_a, arm_b) triples forming the primary family; BY runs over it and over the exploratory
    rest separately. Without `primary` every test is exploratory and BY runs over all of them.
    min_p comes from the data tested (2^-n_nonzero). p is NaN where no pair is complete; p_by then
    stays NaN and significant is False. reachable: whether the test could pass its family's correction at
    all (`reachable`); a claim that rests on an unreachable test is "not testable" there.

    Columns: metric, comparison, arm_a, arm_b, alternative, family, n, n_nonzero, n_excluded, mean_a,
    sem_a, mean_b, sem_b, mean_diff, W, p, p_by, rbc, significant, min_p, reachable."""
    primary = {tuple(t) for t in primary} if primary is not None else set()
    metrics = list(metrics)
    arms = {arm for pair in comparisons for arm in pair}
    by_arm = {arm: d.set_index("seed")[metrics] for arm, d in runs.groupby("arm", sort=False) if arm in arms}
    rows = []
    for a, b in comparisons:
        if a not in by_arm or b not in by_arm:
            continue
        seeds = sorted(set(by_arm[a].index) & set(by_arm[b].index))
        if not seeds:
            continue
        va_all, vb_all = by_arm[a].loc[seeds].to_numpy(float), by_arm[b].loc[seeds].to_numpy(float)
        for j, m in enumerate(metrics):
            alt = DIRECTIONS[m]
            va, vb = va_all[:, j], vb_all[:, j]
            res = signed_rank_test(va, vb, alt)
            both = ~(np.isnan(va) | np.isnan(vb))
            va, vb = va[both], vb[both]
            rows.append({"metric": m, "comparison": f"{a} {'>' if alt == 'greater' else '<'} {b}",
                         "arm_a": a, "arm_b": b, "alternative": alt,
                         "family": "primary" if (m, a, b) in primary else "exploratory",
                         "n": res["n"], "n_nonzero": res["n_nonzero"], "n_excluded": res["n_excluded"],
                         "mean_a": float(va.mean()) if len(va) else float("nan"), "sem_a": sem(va),
                         "mean_b": float(vb.mean()) if len(vb) else float("nan"), "sem_b": sem(vb),
                         "mean_diff": float((va - vb).mean()) if len(va) else float("nan"),
                         "W": res["W"], "p": res["p"], "rbc": res["rbc"], "min_p": res["min_p"]})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame(rows)
    p, fam = out["p"].to_numpy(float), out["family"].to_numpy()
    p_by, reach = np.full(len(p), np.nan), np.zeros(len(p), dtype=bool)
    for f in ("primary", "exploratory"):
        p_by[fam == f] = by_adjust(p[fam == f])
        reach[fam == f] = reachable(p[fam == f], out["min_p"].to_numpy(float)[fam == f], alpha)
    out["p_by"], out["significant"] = p_by, p_by <= alpha  # NaN <= alpha is False
    out["reachable"] = reach
    return out[COLUMNS]
