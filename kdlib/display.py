"""Display labels and table styles for the book: analysis tables keep plain keys, these name them for a
reader (units included) at the moment they are shown."""
from __future__ import annotations

import html

import pandas as pd

LABELS = {
    "accuracy": "test accuracy (%)", "loss": "test cross-entropy (nats)", "ece": "expected calibration error",
    "train_accuracy": "train accuracy (%)", "generalisation_gap": "train - test accuracy (points)",
    "agreement": "agreement with teacher (%)", "js_divergence": "JS divergence (nats)",
    "activation_distance": "activation distance (L2 on probabilities)",
    "kl_teacher_student": "KL(teacher || student) (nats)",
    "pos_agreement": "A+: agreement where teacher right (%)", "neg_agreement": "A-: agreement where teacher wrong (%)",
    "mi": "mutual information of predicted labels (nats)", "nmi": "normalised mutual information",
    "cka": "linear CKA of penultimate features",
    "cka_debiased": "debiased linear CKA (unbiased HSIC)", "mi_plugin_bias": "MI of unrelated models, (K-1)^2/2N (nats)",
    "backdoor_asr": "backdoor attack success (%)", "backdoor_clean_rate": "clean inputs -> target (%)",
    "backdoor_lift": "attack success - base rate of target (points)", "seeds": "seeds",
    # transfer table
    "pos_gain_points": "ΔA+ over control (points)", "neg_gain_points": "ΔA- over control (points)",
    "pos_gain_relative": "ΔA+ relative to control (%)", "neg_gain_relative": "ΔA- relative to control (%)",
    "pos_headroom": "headroom 1 - A+(control) (%)", "neg_headroom": "headroom 1 - A-(control) (%)",
    "pos_share_closed": "share of A+ headroom closed", "neg_share_closed": "share of A- headroom closed",
    "share_seeds": "seeds with both shares defined", "teacher_right": "teacher right (mean n)", "teacher_wrong": "teacher wrong (mean n)",
    "copied_right": "copied right answers (mean n)", "copied_wrong": "copied wrong answers (mean n)",
    # tests
    "family": "family", "comparison": "comparison", "metric": "metric", "difference": "mean difference ± SEM",
    "r": "rank-biserial r", "p_by": "p (BY)", "verdict": "verdict",
    # convergence
    "runs": "runs", "loss_flattened": "runs whose loss flattened", "final_loss": "final training loss",
    # readings
    "kd_weight": "KD weight w", "arm": "arm", "agreement_gain": "agreement - control (points)",
    "kd_gt_control_agreement_p_by": "kd > control agreement, p (BY)",
}


def label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def relabel(df: pd.DataFrame, index: bool = True, columns: bool = True) -> pd.DataFrame:
    out = df.copy()
    if index:
        out.index = [label(str(i)) for i in out.index]
    if columns:
        out.columns = [label(str(c)) for c in out.columns]
    return out


def fmt_p(p: float) -> str:
    return "n/a" if p != p else (f"{p:.2g}" if p >= 0.001 else f"{p:.1e}")


def tests_table(compact: pd.DataFrame):
    """The compact hypothesis-test table, styled: significant rows in bold."""
    t = compact.copy()
    t["p_by"] = t["p_by"].map(fmt_p)
    sty = relabel(t, index=False).style.hide(axis="index")
    return sty.apply(lambda row: ["font-weight: bold" if row[label("verdict")] == "significant" else ""
                                  for _ in row], axis=1).set_properties(**{"white-space": "nowrap"})


def details(summary: str, body: str, raw_html: bool = False, anchor: str = "") -> str:
    """A collapsed block (one click away in the book); `body` is text unless `raw_html`; `anchor`: its HTML
    id, for links to it."""
    inner = body if raw_html else f"<p>{html.escape(body)}</p>"
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return f"<details{ident}><summary>{html.escape(summary)}</summary>\n{inner}\n</details>"
