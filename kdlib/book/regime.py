"""How far the verdicts carry to the paper's regime: for every independent setup of every scale the book
shows, the kd - control agreement gain (points, 95 % interval over seeds) and the share of the control's
disagreement with its teacher that kd closes, against the teacher's test accuracy and the controls' mutual
disagreement (how much independently trained students differ among themselves). Computed from the stores
at read time; nothing here trains.

A weak teacher leaves its control much to disagree on, so the gain in points can track the teacher's
accuracy while the share of that room kd closes does not: the regime sweep (one network and recipe at
several training-set sizes, the `full` scale) isolates the effect of the regime from that of the setup.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import ARMS
from ..metrics import mutual_disagreement, share_closed
from ..stats import mean_ci, spearman
from .claims import independent_groups
from .frames import main_arms, run_table
from .setup_analysis import plan_setups

SWEEP_SCALES = ("full",)  # scales whose entries form the regime sweep (highlighted)
# (y, x) pairs of the correlations the chapter reports
PAIRS = (("gain_points", "teacher_accuracy"), ("gain_points", "control_mutual_disagreement"),
         ("share_closed", "teacher_accuracy"), ("share_closed", "control_mutual_disagreement"))
NAMES = {"gain_points": "agreement gain (points)", "share_closed": "share of the control's disagreement closed",
         "teacher_accuracy": "teacher test accuracy (%)",
         "control_mutual_disagreement": "controls' mutual disagreement (%)"}


def regime_rows(evidence, kd_weight=None) -> pd.DataFrame:
    """One row per independent setup (own teachers and controls; backdoor entries and other KD objectives
    left out, as in the claims) of every scale with a store, under one reading (None: each entry's main)."""
    rows = []
    for scale in evidence.summaries:
        frame = evidence.frame(scale, kd_weight)
        if frame.empty:
            continue
        summaries = [s for s in frame.to_dict("records") if not s.get("has_backdoor") and s["objective"] == "hinton"]
        setups = dict(plan_setups(evidence.study, scale))
        store = evidence.stores[scale]
        for rep, _ in independent_groups(summaries):
            cfg = setups[rep["id"]]
            controls = [store.test_logits(cfg.run_config("control", s)) for s in range(rep["n_seeds"])]
            gain, lo, hi = mean_ci(100.0 * np.array(list(rep["agreement_gains"].values()), dtype=float))
            rows.append({
                "scale": scale, "id": rep["id"], "title": rep["title"], "dataset": rep["dataset"],
                "kd_weight": rep["kd_weight"], "n_seeds": rep["n_seeds"],
                "teacher_accuracy": 100 * rep["teacher_accuracy"], "teacher_train_accuracy": 100 * rep["teacher_train_accuracy"],
                "gain_points": gain, "gain_lo": lo, "gain_hi": hi,
                "control_disagreement": 100 * (1 - rep["control_agreement"]),
                "share_closed": rep["agreement_share_closed"],
                "control_mutual_disagreement": 100 * mutual_disagreement(controls),
                "significant_transfer": rep["significant_transfer"], "sweep": scale in SWEEP_SCALES,
            })
    return pd.DataFrame(rows)


def interim_rows(evidence, kd_weight=None, scales=SWEEP_SCALES) -> pd.DataFrame:
    """The seeds trained so far of the regime sweep's entries still training (study.yaml `pending:`): one row
    per seed whose four arms are all stored under this reading (None: the entry's main KD weight), with the
    teacher's accuracy, each student's accuracy and agreement with its teacher, and kd's gain over the control
    (overall, and on the examples the teacher gets wrong and right). A look at the direction while an entry
    trains over several sessions; no test and no verdict rest on it."""
    rows = []
    for scale in scales:
        store = evidence.stores.get(scale)
        if store is None:
            continue
        setups = dict(plan_setups(evidence.study, scale))
        for entry_id in evidence.study.pending(scale):
            cfg = setups[entry_id]
            w = cfg.kd_weight if kd_weight is None else kd_weight
            if w not in cfg.kd_weights:
                continue
            res = main_arms(run_table(store, cfg), w)
            for seed, d in (res.groupby("seed") if len(res) else ()):
                by = d.set_index("arm")
                if not set(ARMS) <= set(by.index):
                    continue
                m = {a: by.loc[a] for a in ARMS}
                rows.append({
                    "scale": scale, "id": entry_id, "kd_weight": w, "seed": int(seed),
                    "n_seeds_planned": cfg.n_seeds,
                    "teacher_accuracy": 100 * m["teacher"]["accuracy"],
                    "teacher_train_accuracy": 100 * m["teacher"]["train_accuracy"],
                    **{f"{a}_accuracy": 100 * m[a]["accuracy"] for a in ARMS[1:]},
                    **{f"{a}_agreement": 100 * m[a]["agreement"] for a in ARMS[1:]},
                    "gain_points": 100 * (m["kd"]["agreement"] - m["control"]["agreement"]),
                    "share_closed": share_closed(m["kd"]["agreement"], m["control"]["agreement"]),
                    "gain_on_errors": 100 * (m["kd"]["neg_agreement"] - m["control"]["neg_agreement"]),
                    "gain_on_correct": 100 * (m["kd"]["pos_agreement"] - m["control"]["pos_agreement"]),
                })
    return pd.DataFrame(rows)


def correlations(rows: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho (two-sided p) for each pair of PAIRS over the rows."""
    out = []
    for y, x in PAIRS:
        r = spearman(rows[x], rows[y]) if len(rows) else {"rho": float("nan"), "p": float("nan"), "n": 0}
        out.append({"y": NAMES[y], "x": NAMES[x], **r})
    return pd.DataFrame(out)


def sweep_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["sweep"]].sort_values("teacher_accuracy") if len(rows) else rows


def figure(rows: pd.DataFrame, title: str = ""):
    """Gain (with 95 % intervals) and share closed against teacher accuracy and the controls' mutual
    disagreement; one colour per scale, the regime sweep's entries as stars joined in order of accuracy."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7.2), sharex="col")
    colours = dict(zip(sorted(rows["scale"].unique()), plt.get_cmap("tab10").colors)) if len(rows) else {}
    for (i, y), (j, x) in [((i, y), (j, x)) for i, y in enumerate(("gain_points", "share_closed"))
                           for j, x in enumerate(("teacher_accuracy", "control_mutual_disagreement"))]:
        ax = axes[i, j]
        for scale, d in rows.groupby("scale"):
            for star, part in d.groupby("sweep"):
                yerr = None
                if y == "gain_points":
                    yerr = np.vstack([part["gain_points"] - part["gain_lo"], part["gain_hi"] - part["gain_points"]])
                ax.errorbar(part[x], part[y], yerr=yerr, fmt="*" if star else "o", ms=12 if star else 6,
                            color=colours[scale], capsize=2, lw=0.8, label=scale if not star else f"{scale} (sweep)")
        sweep = sweep_rows(rows)
        if len(sweep) > 1:
            ax.plot(sweep[x], sweep[y], color="black", lw=0.8, zorder=0)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_ylabel(NAMES[y] if j == 0 else "")
        if i == 1:
            ax.set_xlabel(NAMES[x])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    fig.legend(seen.values(), seen.keys(), loc="upper center", ncol=min(5, len(seen)), frameon=False)
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig
