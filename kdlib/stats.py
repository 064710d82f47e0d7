"""Paired hypothesis tests across seeds (PROTOCOL.md, "Hypothesis tests").

For each metric and pair of arms: a one-sided Wilcoxon signed-rank test (pingouin) on the per-seed
values paired by seed index, in the direction "more teacher-like" or "better"; the rank-biserial
correlation as effect size; Benjamini-Yekutieli correction across the whole family of a setup.
With n seeds an exact one-sided test cannot go below p = 2^-n, which limits what can survive the
correction: `power_limits` says how far.
"""
from __future__ import annotations

import math
import warnings

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
}
TEST_METRICS = ("accuracy", "loss", "agreement", "js_divergence", "activation_distance",
                "kl_teacher_student", "pos_agreement", "neg_agreement")
COMPARISONS = (("kd", "control"), ("kd", "rcd"), ("rcd", "control"))
ALPHA = 0.05


def metrics_for(runs: pd.DataFrame) -> tuple:
    """The tested family of a setup: the standard metrics, plus the backdoor's success rate where measured."""
    extra = ("backdoor_asr", "backdoor_lift") if "backdoor_asr" in runs and runs["backdoor_asr"].notna().any() else ()
    return TEST_METRICS + extra


def sem(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def by_constant(m: int) -> float:
    """c(m) = sum_{i=1..m} 1/i, the Benjamini-Yekutieli penalty for arbitrary dependence."""
    return float(sum(1.0 / i for i in range(1, m + 1)))


def min_attainable_p(n: int) -> float:
    """Smallest one-sided exact Wilcoxon signed-rank p with n non-zero paired differences: 2^-n."""
    return 2.0 ** -n


def power_limits(n_seeds: int, n_tests: int, alpha: float = ALPHA) -> dict:
    """What the seed count allows after BY correction over `n_tests` tests.

    best case: every test of the family reaches the minimum p; BY then gives c(m) * 2^-n.
    lone test: only one test reaches it and the rest are null; BY then gives m * c(m) * 2^-n."""
    p, c = min_attainable_p(n_seeds), by_constant(n_tests)
    best, lone = min(1.0, c * p), min(1.0, n_tests * c * p)
    return {"n_seeds": n_seeds, "n_tests": n_tests, "alpha": alpha, "min_p": p,
            "min_p_by_best_case": best, "min_p_by_lone_test": lone,
            "can_reach_significance": bool(p <= alpha), "can_survive_correction": bool(best <= alpha),
            "lone_test_can_survive": bool(lone <= alpha)}


def wilcoxon_one_sided(x, y, alternative: str) -> tuple[float, float, float]:
    """(W, p, rank-biserial r) of x vs y, paired. All-zero differences give p = 1, r = 0."""
    import pingouin as pg

    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.allclose(x - y, 0.0, atol=0.0):
        return 0.0, 1.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pg.wilcoxon(x, y, alternative=alternative)
    return float(res["W_val"].iloc[0]), float(res["p_val"].iloc[0]), float(res["RBC"].iloc[0])


def paired_tests(runs: pd.DataFrame, metrics=TEST_METRICS, comparisons=COMPARISONS,
                 alpha: float = ALPHA) -> pd.DataFrame:
    """Tidy table of the tests of one setup. `runs` has one row per (arm, seed) and a column per metric.

    Columns: metric, comparison, arm_a, arm_b, alternative, n, mean_a, sem_a, mean_b, sem_b, mean_diff,
    W, p, p_by, rbc, significant, min_p."""
    rows = []
    for a, b in comparisons:
        xa = runs[runs["arm"] == a].set_index("seed")
        xb = runs[runs["arm"] == b].set_index("seed")
        seeds = sorted(set(xa.index) & set(xb.index))
        if not seeds:
            continue
        for m in metrics:
            alt = DIRECTIONS[m]
            va, vb = xa.loc[seeds, m].to_numpy(float), xb.loc[seeds, m].to_numpy(float)
            w, p, r = wilcoxon_one_sided(va, vb, alt)
            rows.append({"metric": m, "comparison": f"{a} {'>' if alt == 'greater' else '<'} {b}",
                         "arm_a": a, "arm_b": b, "alternative": alt, "n": len(seeds),
                         "mean_a": va.mean(), "sem_a": sem(va), "mean_b": vb.mean(), "sem_b": sem(vb),
                         "mean_diff": float((va - vb).mean()), "W": w, "p": p, "rbc": r,
                         "min_p": min_attainable_p(len(seeds))})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_by"] = sps.false_discovery_control(out["p"].to_numpy(), method="by")
    out["significant"] = out["p_by"] <= alpha
    cols = ["metric", "comparison", "arm_a", "arm_b", "alternative", "n", "mean_a", "sem_a", "mean_b", "sem_b",
            "mean_diff", "W", "p", "p_by", "rbc", "significant", "min_p"]
    return out[cols]


def summarise_arms(runs: pd.DataFrame, metrics) -> pd.DataFrame:
    """Mean and SEM of each metric per arm (one row per arm)."""
    g = runs.groupby("arm", sort=False)
    rows = []
    for arm, d in g:
        row = {"arm": arm, "n": len(d)}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_sem"] = float(d[m].mean()), sem(d[m])
        rows.append(row)
    return pd.DataFrame(rows)
