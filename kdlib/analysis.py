"""Tables and per-setup summaries computed from stored results (pure functions of DataFrames)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import ALPHA, metrics_for, paired_tests, sem

ARM_ORDER = ("teacher", "control", "kd", "rcd")
REPORT_METRICS = ("accuracy", "loss", "ece", "train_accuracy", "generalisation_gap", "agreement", "js_divergence",
                  "activation_distance", "kl_teacher_student", "pos_agreement", "neg_agreement", "backdoor_asr", "backdoor_clean_rate", "backdoor_lift")
PERCENT_METRICS = {"accuracy", "train_accuracy", "agreement", "pos_agreement", "neg_agreement", "backdoor_asr",
                   "backdoor_clean_rate", "backdoor_lift"}


def fmt_mean_sem(values, percent: bool = False) -> str:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return "n/a"
    scale = 100.0 if percent else 1.0
    s = sem(v)
    return f"{scale * v.mean():.2f} ({scale * s:.2f})" if not math.isnan(s) else f"{scale * v.mean():.2f}"


def arm_table(results: pd.DataFrame, metrics=REPORT_METRICS) -> pd.DataFrame:
    """Mean (SEM) of each metric per arm (metrics the runs do not have are left out); fractions as percentages."""
    metrics = [m for m in metrics if m in results]
    rows = []
    for arm in [a for a in ARM_ORDER if a in set(results["arm"])]:
        d = results[results["arm"] == arm]
        row = {"arm": arm, "seeds": len(d)}
        for m in metrics:
            name = f"{m} (%)" if m in PERCENT_METRICS else m
            row[name] = fmt_mean_sem(d[m], m in PERCENT_METRICS)
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def transfer_table(results: pd.DataFrame) -> pd.DataFrame:
    """Positive (A+) and negative (A-) agreement per student arm, their change over the control in
    points and relative to the control, the control's headroom, and the counts behind them."""
    ctrl = results[results["arm"] == "control"]
    rows = []
    for arm in ("control", "kd", "rcd"):
        d = results[results["arm"] == arm]
        if d.empty:
            continue
        row = {"arm": arm}
        for key, label in (("pos_agreement", "A+"), ("neg_agreement", "A-")):
            mean, c = d[key].mean(), ctrl[key].mean()
            row[f"{label} (%)"] = 100 * mean
            row[f"Δ{label} (points)"] = 100 * (mean - c)
            row[f"Δ{label} (relative %)"] = 100 * (mean - c) / c if c > 0 else float("nan")
            row[f"headroom 1-{label}(control) (%)"] = 100 * (1 - c)
        row["teacher right (mean n)"] = d["n_teacher_correct"].mean()
        row["teacher wrong (mean n)"] = d["n_teacher_wrong"].mean()
        row["copied right answers (mean n)"] = d["n_pos_agree"].mean()
        row["copied wrong answers (mean n)"] = d["n_neg_agree"].mean()
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def test_table(tests: pd.DataFrame) -> pd.DataFrame:
    """The hypothesis-test table as shown in the book."""
    t = tests.copy()
    t["mean (SEM) a"] = [f"{m:.4f} ({s:.4f})" for m, s in zip(t["mean_a"], t["sem_a"])]
    t["mean (SEM) b"] = [f"{m:.4f} ({s:.4f})" for m, s in zip(t["mean_b"], t["sem_b"])]
    t["significant"] = np.where(t["significant"], "yes", "no")
    out = t[["comparison", "metric", "n", "mean (SEM) a", "mean (SEM) b", "W", "p", "p_by", "rbc", "significant", "min_p"]]
    return out.rename(columns={"p_by": "p (BY)", "rbc": "effect (rank-biserial r)", "min_p": "smallest p"})


def summarise_setup(entry_id: str, setup, results: pd.DataFrame, alpha: float = ALPHA) -> dict:
    """The numbers that the summary and claims pages use, for one setup run (main RCD noise only)."""
    tests = paired_tests(results, metrics_for(results), alpha=alpha)
    n_seeds = int(results.groupby("arm").size().min()) if len(results) else 0

    def test(metric, a, b):
        row = tests[(tests.metric == metric) & (tests.arm_a == a) & (tests.arm_b == b)]
        return row.iloc[0] if len(row) else None

    def arm_mean(arm, metric):
        d = results.loc[results["arm"] == arm, metric]
        return float(d.mean()) if len(d) else float("nan")

    agree = test("agreement", "kd", "control")
    backdoor = test("backdoor_asr", "kd", "control")
    lift = test("backdoor_lift", "kd", "control")
    kd_rcd_acc = test("accuracy", "kd", "rcd")
    kd = transfer_table(results).loc["kd"]
    return {
        "id": entry_id, "setup": setup.name, "title": setup.title, "modality": setup.modality,
        "dataset": setup.dataset, "kind": setup.kind, "teacher_model": setup.teacher.name,
        "student_model": setup.student.name, "alpha": setup.alpha, "temperature": setup.temperature,
        "rcd_noise": setup.rcd_noise, "variant": setup.variant, "n_seeds": n_seeds, "scale": setup.scale,
        "teacher_accuracy": arm_mean("teacher", "accuracy"),
        "teacher_errors": arm_mean("kd", "n_teacher_wrong"),
        "control_accuracy": arm_mean("control", "accuracy"), "kd_accuracy": arm_mean("kd", "accuracy"),
        "rcd_accuracy": arm_mean("rcd", "accuracy"),
        "control_agreement": arm_mean("control", "agreement"), "kd_agreement": arm_mean("kd", "agreement"),
        "agreement_gain_points": 100 * (arm_mean("kd", "agreement") - arm_mean("control", "agreement")),
        "agreement_p_by": float(agree["p_by"]) if agree is not None else float("nan"),
        "significant_transfer": bool(agree["significant"]) if agree is not None else False,
        "pos_gain_points": kd["ΔA+ (points)"], "neg_gain_points": kd["ΔA- (points)"],
        "pos_gain_relative": kd["ΔA+ (relative %)"] / 100, "neg_gain_relative": kd["ΔA- (relative %)"] / 100,
        "pos_headroom": kd["headroom 1-A+(control) (%)"] / 100, "neg_headroom": kd["headroom 1-A-(control) (%)"] / 100,
        "kd_beats_rcd_accuracy": bool(kd_rcd_acc["significant"]) if kd_rcd_acc is not None else False,
        "kd_vs_rcd_accuracy_p_by": float(kd_rcd_acc["p_by"]) if kd_rcd_acc is not None else float("nan"),
        "teacher_gap": arm_mean("teacher", "generalisation_gap"),
        "has_backdoor": backdoor is not None,
        **{f"{arm}_backdoor_{m}": arm_mean(arm, f"backdoor_{m}") if backdoor is not None else float("nan")
           for arm in ARM_ORDER for m in ("asr", "lift")},
        "backdoor_kd_vs_control_p_by": float(backdoor["p_by"]) if backdoor is not None else float("nan"),
        "backdoor_lift_kd_vs_control_p_by": float(lift["p_by"]) if lift is not None else float("nan"),
        "backdoor_transfers": bool(backdoor["significant"]) if backdoor is not None else False,
        "backdoor_lift_transfers": bool(lift["significant"]) if lift is not None else False,
    }


def plan_setups(study, scale: str, params: dict | None = None) -> list:
    """(entry id, resolved SetupConfig) for every entry of a scale's plan, with extra params applied."""
    return [(e.id, study.setup(e.setup, scale, **{**e.params, **(params or {})})) for e in study.plan(scale)]


def collect_summaries(study, scale: str, store, params: dict | None = None) -> tuple[list[dict], list[str]]:
    """Summaries of every plan entry whose runs are all in the store; ids of the incomplete ones."""
    from .runner import main_arms, setup_results

    summaries, missing = [], []
    for entry_id, cfg in plan_setups(study, scale, params):
        res = setup_results(cfg, store)
        if len(res) < len(cfg.runs()):
            missing.append(entry_id)
            continue
        summaries.append(summarise_setup(entry_id, cfg, main_arms(res)))
    return summaries, missing
