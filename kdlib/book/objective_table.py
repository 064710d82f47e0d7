"""KD objectives under the paper's controls: every entry distilled with another objective than Hinton's, beside
the Hinton entry on the same teachers, controls and seeds, under each reading of the KD weight. Computed from
the per-setup summaries at read time; nothing here trains.

Each row is one objective on one setup under one reading: accuracies of the four arms, the kd - control
agreement gain (points, 95 % t interval over seeds) and the share of the control's disagreement it closes, the
A- / A+ shares (the teacher's wrong / right answers), rcd against kd (TOST within the setup's margin, and
rcd > kd), the divergences to the teacher, and, for objectives other than Hinton's, the gain against Hinton's
paired by seed (both share each seed's control, so the difference is kd against kd). The chapter's tests are
one family: every p-value in its table is Benjamini-Yekutieli adjusted together, at 0.05.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import ALPHA, by_adjust, mean_ci, signed_rank_test

HINTON = "hinton"
# (column of p-values, what it tests) in the chapter's family, in table order
TESTS = (("p_transfer", "kd > control, agreement (one-sided)"),
         ("p_more", "gain above Hinton's (one-sided)"), ("p_less", "gain below Hinton's (one-sided)"),
         ("p_equivalent", "rcd within the margin of kd, accuracy (TOST)"), ("p_rcd_better", "rcd > kd, accuracy (one-sided)"))


def _key(s: dict) -> tuple:
    return tuple(s.get("teacher_hashes", ())), tuple(s.get("control_hashes", ())), s["kd_weight"]


def _gains(s: dict) -> dict:
    return {int(k): 100.0 * float(v) for k, v in s["agreement_gains"].items()}


def reference(summaries: list[dict], other: dict, temperature: float) -> dict | None:
    """The Hinton entry an objective is compared with: Hinton's KD on the same teachers, controls and reading,
    at the study's default temperature, without a backdoor; the one whose id is its setup's name (the base
    entry, not a sweep) if there is one."""
    found = [s for s in summaries if s["objective"] == HINTON and not s.get("has_backdoor")
             and _key(s) == _key(other) and s["temperature"] == temperature]
    found.sort(key=lambda s: (s["id"] != s["setup"], s["id"]))
    return found[0] if found else None


def _row(scale: str, s: dict, base: dict | None) -> dict:
    gains = _gains(s)
    gain, lo, hi = mean_ci(list(gains.values()))
    row = {
        "scale": scale, "setup": s["setup"], "base": base["id"] if base else "", "id": s["id"],
        "objective": s["objective"], "objective_args": s.get("objective_args") or {}, "temperature": s["temperature"],
        "kd_weight": s["kd_weight"], "n_seeds": s["n_seeds"],
        **{f"{arm}_accuracy": 100 * s[f"{arm}_accuracy"] for arm in ("teacher", "control", "kd", "rcd")},
        "gain_points": gain, "gain_lo": lo, "gain_hi": hi, "share_closed": s["agreement_share_closed"],
        "neg_share": s["neg_share_closed"], "pos_share": s["pos_share_closed"],
        "kd_train_accuracy": 100 * s["kd_train_accuracy"], "fitted_train_accuracy": 100 * s["fitted_train_accuracy"],
        "kd_js": s.get("kd_js_divergence", float("nan")), "kd_kl": s.get("kd_kl_teacher_student", float("nan")),
        "rcd_kd_accuracy_diff": 100 * s["rcd_kd_accuracy_diff"], "equivalence_margin": 100 * s["equivalence_margin"],
        "p_transfer": signed_rank_test(list(gains.values()), [0.0] * len(gains), "greater")["p"],
        "p_equivalent": s["rcd_kd_equivalence_p"], "p_rcd_better": s["rcd_better_p"],
        "vs_hinton": float("nan"), "vs_hinton_lo": float("nan"), "vs_hinton_hi": float("nan"),
        "p_more": float("nan"), "p_less": float("nan"),
    }
    if base is not None and s is not base:
        ref = _gains(base)
        seeds = sorted(set(gains) & set(ref))
        a, b = [gains[k] for k in seeds], [ref[k] for k in seeds]
        row["vs_hinton"], row["vs_hinton_lo"], row["vs_hinton_hi"] = mean_ci(np.subtract(a, b))
        row["p_more"] = signed_rank_test(a, b, "greater")["p"]
        row["p_less"] = signed_rank_test(a, b, "less")["p"]
    return row


def objective_rows(evidence) -> pd.DataFrame:
    """One row per objective, setup and reading, for every setup (of every scale with a store) that an entry
    with another objective than Hinton's ran on; its Hinton entry first in each group (absent where the plan has
    none on those teachers). The p-values are adjusted together (columns `<test>_by`)."""
    temperature = float(evidence.study.defaults.get("temperature", 4.0))
    rows = []
    for scale, summaries in evidence.summaries.items():
        summaries = [s for s in summaries if not s.get("has_backdoor")]
        groups: dict = {}
        for s in summaries:
            if s["objective"] != HINTON:
                base = reference(summaries, s, temperature)
                groups.setdefault((_key(s), base["id"] if base else s["setup"]), (base, []))[1].append(s)
        for (_, _), (base, others) in groups.items():
            if base is not None:
                rows.append(_row(scale, base, base))
            rows += [_row(scale, s, base) for s in others]
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    ps = np.concatenate([out[c].to_numpy(float) for c, _ in TESTS])
    adjusted = by_adjust(ps).reshape(len(TESTS), len(out))
    for (c, _), adj in zip(TESTS, adjusted):
        out[f"{c}_by"] = adj
    out["transfers"] = out["p_transfer_by"] <= ALPHA
    out["more_than_hinton"] = out["p_more_by"] <= ALPHA
    out["less_than_hinton"] = out["p_less_by"] <= ALPHA
    out["rcd_reaches_kd"] = out["p_equivalent_by"] <= ALPHA
    out["rcd_beats_kd"] = out["p_rcd_better_by"] <= ALPHA
    # kd students below the study's fitted threshold on their own training set have not learned their data
    # under this objective and recipe: their agreement says little about what the objective transfers
    out["kd_unfitted"] = out["kd_train_accuracy"] < out["fitted_train_accuracy"]
    return out


def label(row) -> str:
    """The objective with its arguments (as the entry ran them, defaults filled in) and its temperature."""
    parts = [f"{k} {v:g}" for k, v in (row["objective_args"] or {}).items()]
    if row["objective"] != "mse":  # the only one that does not use the temperature
        parts.append(f"T {row['temperature']:g}")
    name = "Hinton" if row["objective"] == HINTON else row["objective"].upper()
    return name + (f" ({', '.join(parts)})" if parts else "")


def findings(rows: pd.DataFrame) -> list[str]:
    """One sentence per setup and reading: which objectives transfer significantly (kd > control), which
    transfer significantly more or less than Hinton's, and where rcd reaches or beats kd; all after the
    chapter's correction."""
    out = []
    for (scale, base, w), g in rows.groupby(["scale", "base", "kd_weight"], sort=False):
        names = {i: label(r) for i, r in g.iterrows()}
        others = g[g["objective"] != HINTON]

        def listed(mask, among=g):
            hit = [names[i] for i in among.index[mask.loc[among.index]]]
            return f"{len(hit)} of {len(among)}" + (f" ({'; '.join(hit)})" if hit else "")

        out.append(
            f"**{scale}: {base or g['setup'].iloc[0]}, w = {w:g}.** Significant transfer (kd > control): "
            f"{listed(g['transfers'])}. "
            + (f"A gain significantly above Hinton's: {listed(g['more_than_hinton'], others)}; below it: "
               f"{listed(g['less_than_hinton'], others)}. " if base else
               "No Hinton entry on these teachers in this plan, so no comparison with it. ")
            + f"rcd within the margin of kd in accuracy: {listed(g['rcd_reaches_kd'])}; rcd significantly above kd: "
            f"{listed(g['rcd_beats_kd'])}."
            + ("" if not g["kd_unfitted"].any() else " kd students not fitted (below "
               f"{g['fitted_train_accuracy'].iloc[0]:g} % training accuracy), so their numbers say little about the "
               "objective: " + "; ".join(f"{names[i]} ({r.kd_train_accuracy:.0f} % train)"
                                         for i, r in g[g["kd_unfitted"]].iterrows()) + "."))
    return out


def figure(rows: pd.DataFrame):
    """Per setup (rows of panels) and reading (columns): the agreement gain of each objective with its 95 %
    interval, the share of headroom closed written beside it; Hinton's dashed across the panel; grey where the
    kd students are not fitted."""
    import matplotlib.pyplot as plt

    groups = list(rows.groupby(["scale", "base", "setup"], sort=False))
    readings = sorted(rows["kd_weight"].unique(), reverse=True)
    fig, axes = plt.subplots(len(groups), len(readings), squeeze=False,
                             figsize=(3.8 * len(readings) + 1.5, (0.42 * rows.groupby(["scale", "base", "setup", "kd_weight"]).size().max() + 1.2) * len(groups)))
    for i, ((scale, base, setup), g) in enumerate(groups):
        for j, w in enumerate(readings):
            ax, d = axes[i, j], g[g["kd_weight"] == w].reset_index(drop=True)
            ys = np.arange(len(d))[::-1]
            for y, (_, r) in zip(ys, d.iterrows()):
                colour = "black" if r["objective"] == HINTON else "tab:gray" if r["kd_unfitted"] else "tab:blue"
                ax.errorbar(r["gain_points"], y, xerr=[[r["gain_points"] - r["gain_lo"]], [r["gain_hi"] - r["gain_points"]]],
                            fmt="o", color=colour, capsize=3)
                ax.annotate(f"{100 * r['share_closed']:.0f} %", (1.0, y), xycoords=("axes fraction", "data"),
                            xytext=(4, 0), textcoords="offset points", va="center", fontsize=10)
                if r["objective"] == HINTON:
                    ax.axvline(r["gain_points"], color="0.6", ls="--", lw=0.8)
            ax.axvline(0, color="0.8", lw=0.8)
            ax.set_yticks(ys, [label(r) for _, r in d.iterrows()], fontsize=10)
            ax.set_ylim(-0.7, max(len(d), 1) - 0.3)
            ax.set_title(f"{scale}: {base or setup}, w = {w:g}", fontsize=10)
            ax.set_xlabel("agreement gain over the control (points)", fontsize=10)
    fig.tight_layout()
    return fig
