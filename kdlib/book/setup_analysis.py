"""Tables and per-setup summaries computed from stored results (pure functions of DataFrames).

Tables use plain column keys (metric names); `labels.show` gives them display labels when shown.
`summarise_setup` gives the numbers the summary and claims pages use, for one setup under one reading
of the KD weight.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from ..stats import (ALPHA, COMPARISONS, equivalence_test, measured, metrics_for, paired_tests, sem,
                    signed_rank_test)
from ..config import ARMS
from ..metrics import share_closed
from .frames import main_arms, run_table

REPORT_METRICS = ("accuracy", "loss", "ece", "train_accuracy", "generalisation_gap", "agreement", "js_divergence",
                  "activation_distance", "kl_teacher_student", "pos_agreement", "neg_agreement", "mi", "nmi", "cka",
                  "backdoor_asr", "backdoor_clean_rate", "backdoor_lift")
PERCENT_METRICS = {"accuracy", "train_accuracy", "agreement", "pos_agreement", "neg_agreement", "backdoor_asr",
                   "backdoor_clean_rate", "backdoor_lift"}
# The default primary family (study.yaml `defaults: primary:` can change it per setup).
DEFAULT_PRIMARY = (("agreement", "kd", "control"), ("neg_agreement", "kd", "control"), ("agreement", "kd", "rcd"))
# In a backdoor setup the trigger's lift decides claim 7, so it is a primary test there (PROTOCOL.md, 2026-11-30).
BACKDOOR_PRIMARY = ("backdoor_lift", "kd", "control")
FLAT_TAIL, FLAT_SHARE = 0.2, 0.05  # "flattened": < 5 % of the loss decrease came in the last 20 % of epochs


def primary_family(setup) -> tuple:
    """The setup's primary test family: the one its study-file entry declares, else DEFAULT_PRIMARY; a
    backdoor setup's family also holds the trigger-lift test (kd > control)."""
    family = tuple(tuple(t) for t in (setup.primary or DEFAULT_PRIMARY))
    if getattr(setup, "backdoor", None) and BACKDOOR_PRIMARY not in family:
        family += (BACKDOOR_PRIMARY,)
    return family


def fmt_mean_sem(values, percent: bool = False) -> str:
    """Mean (SEM): percentages to two decimals, other metrics to four significant digits."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return "n/a"
    if percent:
        m, s = 100.0 * v.mean(), 100.0 * sem(v)
        return f"{m:.2f} ({s:.2f})" if not math.isnan(s) else f"{m:.2f}"
    m, s = v.mean(), sem(v)
    return f"{m:.4g} ({s:.2g})" if not math.isnan(s) else f"{m:.4g}"


def arms_present(results: pd.DataFrame, with_teacher: bool = True) -> list[str]:
    return [a for a in ARMS if a in set(results["arm"]) and (with_teacher or a != "teacher")]


def arm_table(results: pd.DataFrame, metrics=REPORT_METRICS) -> pd.DataFrame:
    """Mean (SEM) of each metric per arm, metrics as rows, arms as columns (fractions as percentages)."""
    metrics = [m for m in metrics if measured(results, m)]
    out = {}
    for arm in arms_present(results):
        d = results[results["arm"] == arm]
        out[arm] = {m: fmt_mean_sem(d[m], m in PERCENT_METRICS) for m in metrics}
        out[arm]["seeds"] = str(len(d))
    return pd.DataFrame(out).reindex(["seeds"] + metrics)


def _by_seed(results: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    return results[results["arm"] == arm].set_index("seed")[metric]


def headroom_shares(results: pd.DataFrame, arm: str = "kd", min_disagreements: int = 1) -> pd.DataFrame:
    """Per seed: the share of the control's remaining headroom that `arm` closes,
    (A_arm - A_control) / (1 - A_control), on the teacher's right (A+) and wrong (A-) answers.
    NaN where the control disagrees with the teacher on fewer than `min_disagreements` examples of that
    subset (a share from one or two examples moves in steps of 50-100 %), or A- is undefined (a teacher
    seed with no test errors). The control's disagreements are counted from the stored counts."""
    if isinstance(min_disagreements, bool) or not isinstance(min_disagreements, int) or min_disagreements < 1:
        raise ValueError(f"min_disagreements must be an integer >= 1, got {min_disagreements!r}")
    out = {}
    for key, col, n_set, n_agree in (("pos_agreement", "pos_share", "n_teacher_correct", "n_pos_agree"),
                                     ("neg_agreement", "neg_share", "n_teacher_wrong", "n_neg_agree")):
        a, c = _by_seed(results, arm, key), _by_seed(results, "control", key)
        seeds = a.index.intersection(c.index)
        head = 1.0 - c.loc[seeds]
        disagree = (_by_seed(results, "control", n_set) - _by_seed(results, "control", n_agree)).loc[seeds]
        out[col] = (a.loc[seeds] - c.loc[seeds]) / head.where((head > 0) & (disagree >= min_disagreements - 0.5))
    return pd.DataFrame(out)


def paired_shares(results: pd.DataFrame, arm: str = "kd", min_disagreements: int = 1) -> pd.DataFrame:
    """`headroom_shares` on the seeds where both shares are defined: the pairs the asymmetry test uses, so
    the means shown and the test use the same seeds and the same estimator (mean of per-seed shares)."""
    return headroom_shares(results, arm, min_disagreements).dropna()


def transfer_table(results: pd.DataFrame, min_disagreements: int = 1) -> pd.DataFrame:
    """Positive (A+) and negative (A-) agreement per student arm, their change over the control (points
    and relative), the control's headroom, the mean share of it closed (over the seeds where both shares
    are defined, `paired_shares`: share_seeds of them), and the counts behind them."""
    ctrl = results[results["arm"] == "control"]
    rows = {}
    for arm in ("control", "kd", "rcd"):
        d = results[results["arm"] == arm]
        if d.empty:
            continue
        row = {}
        shares = paired_shares(results, arm, min_disagreements) if arm != "control" else None
        for key, label in (("pos_agreement", "pos"), ("neg_agreement", "neg")):
            mean, c = d[key].mean(), ctrl[key].mean()
            row[f"{label}_agreement"] = 100 * mean
            row[f"{label}_gain_points"] = 100 * (mean - c)
            row[f"{label}_gain_relative"] = 100 * (mean - c) / c if c > 0 else float("nan")
            row[f"{label}_headroom"] = 100 * (1 - c)
            row[f"{label}_share_closed"] = float(shares[f"{label}_share"].mean()) if shares is not None else float("nan")
        row["share_seeds"] = len(shares) if shares is not None else float("nan")
        row["teacher_right"] = d["n_teacher_correct"].mean()
        row["teacher_wrong"] = d["n_teacher_wrong"].mean()
        row["copied_right"] = d["n_pos_agree"].mean()
        row["copied_wrong"] = d["n_neg_agree"].mean()
        rows[arm] = row
    return pd.DataFrame(rows)


def setup_tests(results: pd.DataFrame, primary: Iterable = DEFAULT_PRIMARY, alpha: float = ALPHA) -> pd.DataFrame:
    """The paired tests of one setup under one reading: the primary family (corrected on its own) and the
    exploratory rest (corrected on its own)."""
    tests = paired_tests(results, metrics_for(results), COMPARISONS, alpha=alpha, primary=[tuple(p) for p in primary])
    if not tests.empty:  # the SEM of the paired differences, for the compact table
        tests["sem_diff"] = [sem((_by_seed(results, a, m) - _by_seed(results, b, m)).dropna())
                             for m, a, b in zip(tests["metric"], tests["arm_a"], tests["arm_b"])]
    return tests


def asymmetry_test(results: pd.DataFrame, min_disagreements: int = 1) -> dict:
    """Claim 3: is the share of headroom kd closes on the teacher's errors (A-) larger than on its right
    answers (A+)? Paired by seed, one-sided, exact; seeds with an undefined share (see `headroom_shares`)
    are excluded, and the means are over the seeds the test kept."""
    s = headroom_shares(results, "kd", min_disagreements)
    both = s.dropna()
    neg, pos = s["neg_share"].to_numpy(float), s["pos_share"].to_numpy(float)
    return {**signed_rank_test(neg, pos, "greater"),
            "p_reverse": signed_rank_test(neg, pos, "less")["p"],  # A+ share above A-: the opposite of claim 3
            "pos_share": float(both["pos_share"].mean()) if len(both) else float("nan"),
            "neg_share": float(both["neg_share"].mean()) if len(both) else float("nan")}


def convergence(results: pd.DataFrame, epoch_logs: dict) -> pd.DataFrame:
    """Per arm: runs, how many runs' training loss flattened (less than FLAT_SHARE of the total decrease in
    the last FLAT_TAIL of the epochs), mean train accuracy (%) and mean final training loss.
    `epoch_logs`: hash -> epoch log."""
    rows = {}
    for arm in arms_present(results):
        d = results[results["arm"] == arm]
        flat = [is_flat([e["loss"] for e in epoch_logs[h]]) for h in d["hash"] if h in epoch_logs]
        rows[arm] = {"runs": len(d), "loss_flattened": int(sum(flat)),
                     "train_accuracy": 100 * float(d["train_accuracy"].mean()),
                     "final_loss": float(np.mean([epoch_logs[h][-1]["loss"] for h in d["hash"] if h in epoch_logs]))}
    return pd.DataFrame(rows)


def is_flat(losses: list, tail: float = FLAT_TAIL, share: float = FLAT_SHARE) -> bool:
    """Less than `share` of the loss decrease from the first to the last epoch happened in the last `tail`
    of the epochs (a single-epoch run cannot show a plateau)."""
    if len(losses) < 3:
        return False
    k = max(1, int(round(tail * len(losses))))
    drop = losses[0] - losses[-1]
    if drop <= 0:
        return False
    return (losses[-1 - k] - losses[-1]) <= share * drop


def negative_transfer_test(results: pd.DataFrame) -> dict:
    """kd less teacher-like than its control (agreement, paired by seed, one-sided exact signed-rank test the
    other way round), on the four arms under one reading. The test's keys, plus `kd` and `control`: the
    paired per-seed agreements. p NaN without a pair."""
    kd, ctrl = _by_seed(results, "kd", "agreement").align(_by_seed(results, "control", "agreement"), join="inner")
    res = signed_rank_test(kd.to_numpy(float), ctrl.to_numpy(float), "less") if len(kd) else \
        {"p": float("nan"), "min_p": float("nan")}
    return {**res, "kd": kd, "control": ctrl}


def _row(tests: pd.DataFrame, metric: str, a: str, b: str):
    r = tests[(tests.metric == metric) & (tests.arm_a == a) & (tests.arm_b == b)]
    return r.iloc[0] if len(r) else None


def summarise_setup(entry_id: str, setup, results: pd.DataFrame, kd_weight: Optional[float] = None,
                    alpha: float = ALPHA) -> dict:
    """The numbers that the summary and claims pages use, for one setup under one KD weight."""
    w = setup.kd_weight if kd_weight is None else kd_weight
    r = main_arms(results, w)
    tests = setup_tests(r, primary_family(setup), alpha)
    n_seeds = int(r.groupby("arm").size().min()) if len(r) else 0

    def mean(arm, metric):
        d = r.loc[r["arm"] == arm, metric] if metric in r else pd.Series(dtype=float)
        return float(d.mean()) if len(d) else float("nan")

    agree, neg = _row(tests, "agreement", "kd", "control"), _row(tests, "neg_agreement", "kd", "control")
    kd_rcd_agree, kd_rcd_acc = _row(tests, "agreement", "kd", "rcd"), _row(tests, "accuracy", "kd", "rcd")
    bd_asr, bd_lift = _row(tests, "backdoor_asr", "kd", "control"), _row(tests, "backdoor_lift", "kd", "control")
    rcd_acc, kd_acc = _by_seed(r, "rcd", "accuracy"), _by_seed(r, "kd", "accuracy")
    seeds = kd_acc.index.intersection(rcd_acc.index)
    equiv = equivalence_test(rcd_acc.loc[seeds].to_numpy(float), kd_acc.loc[seeds].to_numpy(float),
                             setup.equivalence_margin)
    rcd_better = signed_rank_test(rcd_acc.loc[seeds].to_numpy(float), kd_acc.loc[seeds].to_numpy(float), "greater")
    asym = asymmetry_test(r, setup.min_disagreements)
    tt = transfer_table(r, setup.min_disagreements)
    ctrl = r[r["arm"] == "control"]
    # the control's disagreements with its teacher, per seed (test examples): the headroom of claim 1
    ctrl_disagree = ctrl["n_teacher_correct"] + ctrl["n_teacher_wrong"] - ctrl["n_pos_agree"] - ctrl["n_neg_agree"]
    gains = (_by_seed(r, "kd", "agreement") - _by_seed(r, "control", "agreement")).dropna()
    # the other way round: kd less teacher-like than its control (negative transfer), one-sided, exact
    negative = negative_transfer_test(r)
    kd = tt["kd"] if "kd" in tt else pd.Series(dtype=float)
    teacher = r[r["arm"] == "teacher"].sort_values("seed")

    def p(row):
        return float(row["p_by"]) if row is not None else float("nan")

    def sig(row):
        return bool(row["significant"]) if row is not None else False

    def reach(row):
        return bool(row["reachable"]) if row is not None else False

    return {
        "id": entry_id, "setup": setup.name, "title": setup.title, "modality": setup.modality, "scale": setup.scale,
        "dataset": setup.dataset, "kind": setup.kind, "teacher_model": setup.teacher.name,
        "student_model": setup.student.name, "student_args": dict(setup.student.args), "kd_weight": w,
        "main_kd_weight": setup.kd_weight, "temperature": setup.temperature, "rcd_noise": setup.rcd_noise,
        "variant": setup.variant, "objective": setup.objective,
        "objective_args": dict(setup.objective_args or {}), "recipe": setup.recipe, "epochs": setup.train["epochs"],
        "optimizer": setup.train["optimizer"], "teacher_args": dict(setup.teacher.args), "n_seeds": n_seeds,
        "min_disagreements": setup.min_disagreements, "fitted_train_accuracy": setup.fitted_train_accuracy,
        "teacher_hashes": sorted(r.loc[r.arm == "teacher", "hash"]), "control_hashes": sorted(r.loc[r.arm == "control", "hash"]),
        "kd_hashes": sorted(r.loc[r.arm == "kd", "hash"]),
        # could the kd > control agreement test pass its family's correction with the non-zero differences it kept?
        "transfer_testable": reach(agree),
        "transfer_n_nonzero": int(agree["n_nonzero"]) if agree is not None else 0,
        "transfer_min_p": float(agree["min_p"]) if agree is not None else float("nan"),
        "control_disagreements": float(ctrl_disagree.mean()) if len(ctrl_disagree) else float("nan"),
        "agreement_gains": {int(k): float(v) for k, v in gains.items()},
        "teacher_accuracy": mean("teacher", "accuracy"), "teacher_train_accuracy": mean("teacher", "train_accuracy"),
        "teacher_errors": mean("kd", "n_teacher_wrong"),
        "control_accuracy": mean("control", "accuracy"), "kd_accuracy": mean("kd", "accuracy"),
        "rcd_accuracy": mean("rcd", "accuracy"),
        "control_agreement": mean("control", "agreement"), "kd_agreement": mean("kd", "agreement"),
        "rcd_agreement": mean("rcd", "agreement"),
        "agreement_gain_points": 100 * (mean("kd", "agreement") - mean("control", "agreement")),
        "agreement_share_closed": share_closed(mean("kd", "agreement"), mean("control", "agreement")),
        "agreement_p_by": p(agree), "significant_transfer": sig(agree),
        "neg_rise_p_by": p(neg), "neg_rise_significant": sig(neg),
        "kd_vs_rcd_agreement_p_by": p(kd_rcd_agree), "kd_beats_rcd_agreement": sig(kd_rcd_agree),
        "kd_vs_rcd_accuracy_p_by": p(kd_rcd_acc), "kd_beats_rcd_accuracy": sig(kd_rcd_acc),
        "rcd_kd_equivalence_p": equiv["p"], "rcd_kd_equivalent": bool(equiv["equivalent"]),
        "rcd_kd_accuracy_diff": equiv["mean_diff"], "equivalence_margin": setup.equivalence_margin,
        "equivalence_testable": bool(equiv.get("min_p", 0.0) <= alpha),
        "rcd_better_p": rcd_better["p"],
        "pos_gain_points": kd.get("pos_gain_points", float("nan")), "neg_gain_points": kd.get("neg_gain_points", float("nan")),
        "pos_gain_relative": kd.get("pos_gain_relative", float("nan")) / 100,
        "neg_gain_relative": kd.get("neg_gain_relative", float("nan")) / 100,
        "pos_headroom": kd.get("pos_headroom", float("nan")) / 100, "neg_headroom": kd.get("neg_headroom", float("nan")) / 100,
        "pos_share_closed": asym["pos_share"], "neg_share_closed": asym["neg_share"],
        "asymmetry_p": asym["p"], "asymmetry_n": asym["n_nonzero"], "asymmetry_excluded": asym["n_excluded"],
        "asymmetry_p_reverse": asym["p_reverse"],
        "negative_transfer_p": negative["p"], "negative_transfer_min_p": negative["min_p"],
        "kd_accuracies": {int(k): float(v) for k, v in kd_acc.items()},
        "rcd_accuracies": {int(k): float(v) for k, v in rcd_acc.items()},
        "kd_train_accuracy": mean("kd", "train_accuracy"), "control_train_accuracy": mean("control", "train_accuracy"),
        "asymmetry_min_p": asym["min_p"] if asym["n_nonzero"] else float("nan"),
        "asymmetry_seeds": asym["n"],  # seeds with both shares defined: the means shown are over these
        "teacher_gap": mean("teacher", "generalisation_gap"),
        "teacher_gaps": dict(zip(teacher["seed"].astype(int), teacher["generalisation_gap"].astype(float))),
        "has_backdoor": bd_asr is not None,
        **{f"{arm}_backdoor_{m}": mean(arm, f"backdoor_{m}") if bd_asr is not None else float("nan")
           for arm in ARMS for m in ("asr", "lift")},
        "backdoor_kd_vs_control_p_by": p(bd_asr), "backdoor_lift_kd_vs_control_p_by": p(bd_lift),
        "backdoor_transfers": sig(bd_asr), "backdoor_lift_transfers": sig(bd_lift),
        "backdoor_lift_testable": reach(bd_lift), "backdoor_lift_primary": bd_lift is not None and bd_lift["family"] == "primary",
        "kd_mi": mean("kd", "mi"), "control_mi": mean("control", "mi"),
        "kd_cka": mean("kd", "cka"), "control_cka": mean("control", "cka"),
        **{f"{arm}_{m}": mean(arm, m) for arm in ("kd", "rcd", "control") for m in ("js_divergence", "kl_teacher_student")},
    }


def plan_setups(study, scale: str) -> list:
    """(entry id, resolved SetupConfig) for every entry of a scale's plan."""
    return [(e.id, study.entry_setup(scale, e)) for e in study.plan(scale)]


def collect_summaries(study, scale: str, store) -> tuple[list[dict], list[str]]:
    """Summaries of every plan entry whose runs are all in the store, one per KD weight the entry ran;
    and the ids of incomplete entries."""
    summaries, missing = [], []
    for entry_id, cfg in plan_setups(study, scale):
        res = run_table(store, cfg)
        if len(res) < len(cfg.runs()):
            missing.append(entry_id)
            continue
        for w in cfg.kd_weights:
            summaries.append(summarise_setup(entry_id, cfg, res, w))
    return summaries, missing


def weight_curve(results: pd.DataFrame) -> pd.DataFrame:
    """Mean (SEM) accuracy and agreement of kd and of each rcd noise at every KD weight the setup ran."""
    d = results[results["arm"].isin(["kd", "rcd"])].copy()
    d["arm_noise"] = np.where(d["arm"] == "rcd", "rcd: " + d["rcd_noise"].astype(str), "kd")
    g = d.groupby(["arm_noise", "kd_weight"])
    out = g[["accuracy", "agreement"]].mean().rename(columns=lambda c: f"{c}_mean")
    sems = g[["accuracy", "agreement"]].sem().rename(columns=lambda c: f"{c}_sem")
    return out.join(sems).reset_index()


def readings_table(results: pd.DataFrame, setup, tests: Optional[dict] = None) -> pd.DataFrame:
    """kd and rcd (main noise) at every KD weight the setup ran, beside the control: accuracy, agreement,
    A+ / A-, and whether kd > control agreement is significant in the primary family of that reading.
    `tests`: the setup's tests per KD weight where already computed."""
    rows = []
    ctrl = results[results["arm"] == "control"]
    for w in setup.kd_weights:
        r = main_arms(results, w)
        tests_w = tests[w] if tests and w in tests else setup_tests(r, primary_family(setup))
        agree = _row(tests_w, "agreement", "kd", "control")
        for arm in ("kd", "rcd"):
            d = r[r["arm"] == arm]
            rows.append({"kd_weight": w, "arm": arm, "accuracy": 100 * d["accuracy"].mean(),
                         "agreement": 100 * d["agreement"].mean(),
                         "agreement_gain": 100 * (d["agreement"].mean() - ctrl["agreement"].mean()),
                         "pos_agreement": 100 * d["pos_agreement"].mean(), "neg_agreement": 100 * d["neg_agreement"].mean(),
                         "kd_gt_control_agreement_p_by": float(agree["p_by"]) if (agree is not None and arm == "kd") else float("nan")})
    return pd.DataFrame(rows)


def compact_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """The hypothesis tests as the book shows them: few, clear columns (the full table is one click away)."""
    if tests.empty:
        return tests
    diff = tests["mean_a"] - tests["mean_b"]
    pct = tests["metric"].isin(PERCENT_METRICS)
    scale = np.where(pct, 100.0, 1.0)
    sem_diff = tests["sem_diff"] if "sem_diff" in tests else [float("nan")] * len(tests)
    out = pd.DataFrame({
        "family": tests["family"], "comparison": tests["comparison"], "metric": tests["metric"],
        "difference": [_fmt_diff(s * d, s * e, pct) for s, d, e, pct in zip(scale, diff, sem_diff, pct)],
        "r": [f"{r:+.2f}" for r in tests["rbc"]], "p_by": tests["p_by"],
        "verdict": np.where(tests["significant"], "significant", "n.s."),
    })
    return out


def _fmt_diff(d: float, e: float, percent: bool) -> str:
    """Points to two decimals for percentages; three significant digits for the rest (JS, KL, CKA, ...)."""
    if percent:
        return f"{d:+.2f} ± {e:.2f}" if not math.isnan(e) else f"{d:+.2f}"
    return f"{d:+.3g} ± {e:.2g}" if not math.isnan(e) else f"{d:+.3g}"


__all__ = ["arm_table", "transfer_table", "headroom_shares", "setup_tests", "asymmetry_test", "convergence",
           "summarise_setup", "collect_summaries", "plan_setups", "weight_curve", "readings_table", "compact_tests",
           "primary_family", "paired_shares", "PERCENT_METRICS", "REPORT_METRICS"]
