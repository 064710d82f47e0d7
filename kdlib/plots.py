"""The book's figures and interactive views, one function per figure kind. Colours per arm are fixed."""
from __future__ import annotations

import json
import uuid

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .analysis import ARM_ORDER, PERCENT_METRICS, transfer_table

ARM_COLOURS = {"teacher": "#555555", "control": "#1f77b4", "kd": "#d62728", "rcd": "#2ca02c"}
RCD_COLOURS = {"unit_fixed": "#2ca02c", "unit_resampled": "#98df8a", "teacher_scaled": "#8c564b", "permuted": "#bcbd22"}
LABELS = {
    "accuracy": "test accuracy (%)", "agreement": "agreement with teacher (%)", "js_divergence": "JS divergence (nats)",
    "activation_distance": "activation distance (L2 on probabilities)", "kl_teacher_student": "KL(teacher || student) (nats)",
    "pos_agreement": "A+ agreement where teacher right (%)", "neg_agreement": "A- agreement where teacher wrong (%)",
    "loss": "test cross-entropy (nats)", "ece": "expected calibration error", "generalisation_gap": "train - test accuracy (points)",
    "train_accuracy": "train accuracy (%)", "backdoor_asr": "backdoor attack success (%)",
    "backdoor_lift": "attack success - base rate of target (points)", "backdoor_clean_rate": "clean inputs -> target (%)",
}


def _values(d: pd.DataFrame, metric: str) -> pd.Series:
    return d[metric] * (100.0 if metric in PERCENT_METRICS else 1.0)


def _arms(results: pd.DataFrame, with_teacher: bool = False) -> list[str]:
    return [a for a in ARM_ORDER if a in set(results["arm"]) and (with_teacher or a != "teacher")]


def per_seed_figure(results: pd.DataFrame, metrics=("agreement", "js_divergence", "accuracy")):
    """Per-seed values by arm; grey lines join the arms of one seed (the pairing of the tests)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.5 * len(metrics), 3.6))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        arms = _arms(results, with_teacher=m in ("accuracy", "backdoor_asr", "backdoor_lift"))
        d = results[results["arm"].isin(arms)].copy()
        d["value"] = _values(d, m)
        wide = d.pivot_table(index="seed", columns="arm", values="value")[arms]
        for _, row in wide.iterrows():
            ax.plot(range(len(arms)), row.values, color="0.8", lw=0.8, zorder=1)
        sns.stripplot(data=d, x="arm", y="value", hue="arm", order=arms, palette=ARM_COLOURS, ax=ax,
                      size=6, jitter=False, legend=False, zorder=2)
        ax.errorbar(range(len(arms)), wide.mean().values, yerr=wide.sem().values, fmt="_", color="black",
                    markersize=22, capsize=4, zorder=3)
        ax.set_xlabel("arm")
        ax.set_ylabel(LABELS.get(m, m))
        ax.set_title(m.replace("_", " "))
    fig.suptitle("Per-seed results (black: mean ± SEM)")
    fig.tight_layout()
    return fig


def transfer_figure(results: pd.DataFrame):
    """A+ and A- by arm (left) and their change over the control with the control's headroom (right)."""
    arms = _arms(results)
    table = transfer_table(results)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.5, 7.5))
    width = 0.38
    for j, (key, label) in enumerate((("pos_agreement", "A+"), ("neg_agreement", "A-"))):
        means = table.loc[arms, f"{label} (%)"]
        sems = [100 * results.loc[results.arm == a, key].sem() for a in arms]
        ax1.bar(np.arange(len(arms)) + (j - 0.5) * width, means, width, yerr=sems, capsize=3,
                color=[ARM_COLOURS[a] for a in arms], alpha=1.0 if j == 0 else 0.55,
                hatch=None if j == 0 else "//", edgecolor="black",
                label=f"{label} (teacher {'right' if j == 0 else 'wrong'})")
    ax1.set_xticks(range(len(arms)), arms)
    ax1.set_xlabel("arm")
    ax1.set_ylabel("agreement with teacher (%)")
    ax1.set_title("positive (A+, solid) and negative (A-, hatched) agreement")
    ax1.legend(loc="lower left", fontsize=8)
    students = [a for a in arms if a != "control"]
    for j, label in enumerate(("ΔA+", "ΔA-")):
        deltas = table.loc[students, f"{label} (points)"]
        ax2.bar(np.arange(len(students)) + (j - 0.5) * width, deltas, width,
                color=[ARM_COLOURS[a] for a in students], alpha=1.0 if j == 0 else 0.55,
                hatch=None if j == 0 else "//", edgecolor="black", label=label)
    ax2.axhline(0, color="black", lw=0.8)
    head_pos, head_neg = table.loc["control", ["headroom 1-A+(control) (%)", "headroom 1-A-(control) (%)"]]
    ax2.set_xticks(range(len(students)), students)
    ax2.set_xlabel("arm")
    ax2.set_ylabel("change over control (points)")
    ax2.set_title(f"headroom: 1-A+(control) = {head_pos:.1f}, 1-A-(control) = {head_neg:.1f} points", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gap_figure(results: pd.DataFrame):
    arms = _arms(results, with_teacher=True)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    sns.barplot(data=results, x="arm", y="generalisation_gap", hue="arm", order=arms, palette=ARM_COLOURS,
                errorbar="se", capsize=0.2, ax=ax, legend=False)
    ax.set_xlabel("arm")
    ax.set_ylabel(LABELS["generalisation_gap"])
    ax.set_title("generalisation gap (mean ± SEM)")
    fig.tight_layout()
    return fig


def rcd_variants_figure(results: pd.DataFrame):
    """Accuracy and agreement of each RCD noise variant beside control and kd."""
    d = results[results.arm != "teacher"].copy()
    d["arm / noise"] = np.where(d.arm == "rcd", "rcd: " + d.rcd_noise.astype(str), d.arm)
    order = ["control", "kd"] + sorted(x for x in d["arm / noise"].unique() if x.startswith("rcd"))
    palette = {**{k: ARM_COLOURS[k] for k in ("control", "kd")},
               **{f"rcd: {k}": v for k, v in RCD_COLOURS.items()}}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, m in zip(axes, ("accuracy", "agreement")):
        d["value"] = _values(d, m)
        sns.barplot(data=d, x="arm / noise", y="value", hue="arm / noise", order=order, palette=palette,
                    errorbar="se", capsize=0.2, ax=ax, legend=False)
        ax.set_ylabel(LABELS[m])
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    fig.suptitle("RCD noise variants side by side (mean ± SEM over seeds)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ interactive
def show_plotly(fig) -> None:
    """Display a plotly figure so that it renders in the static book (plotly.js is loaded once per
    page from the book's vendored copy) and in JupyterLab (plotly's own mimetype)."""
    from IPython.display import display

    html = fig.to_html(include_plotlyjs=False, full_html=False, div_id=f"plotly-{uuid.uuid4().hex[:8]}",
                       config={"displaylogo": False, "responsive": True})
    display({"text/html": html, "application/vnd.plotly.v1+json": json.loads(fig.to_json())}, raw=True)


def metric_explorer(results: pd.DataFrame, metrics, title: str):
    """Per-seed values by arm with a dropdown that switches the metric (runs in the browser)."""
    import plotly.graph_objects as go

    arms = _arms(results, with_teacher=True)
    fig = go.Figure()
    for arm in arms:
        d = results[results.arm == arm]
        fig.add_trace(go.Box(y=_values(d, metrics[0]), name=arm, boxpoints="all", pointpos=0, jitter=0.3,
                             marker_color=ARM_COLOURS[arm], text=[f"seed {s}" for s in d.seed],
                             hovertemplate="%{text}: %{y:.4f}<extra>" + arm + "</extra>"))
    buttons = []
    for m in metrics:
        ys = [list(_values(results[results.arm == a], m)) if m in results and results.loc[results.arm == a, m].notna().any()
              else [] for a in arms]
        buttons.append({"label": m.replace("_", " "), "method": "update",
                        "args": [{"y": ys}, {"yaxis": {"title": {"text": LABELS.get(m, m)}}}]})
    fig.update_layout(title={"text": title, "y": 0.97}, yaxis_title=LABELS.get(metrics[0], metrics[0]),
                      xaxis_title="arm", showlegend=False, height=460, margin={"t": 110}, template="plotly_white",
                      updatemenus=[{"buttons": buttons, "x": 0.0, "xanchor": "left", "y": 1.04, "yanchor": "bottom"}])
    return fig


def summary_explorer(summary: pd.DataFrame):
    """One bar per setup; a dropdown picks the quantity (agreement gain, ΔA+ / ΔA-, accuracies)."""
    import plotly.graph_objects as go

    quantities = {
        "agreement gain kd - control (points)": summary["agreement_gain_points"],
        "ΔA+ kd - control (points)": summary["pos_gain_points"],
        "ΔA- kd - control (points)": summary["neg_gain_points"],
        "ΔA+ relative to control (%)": 100 * summary["pos_gain_relative"],
        "ΔA- relative to control (%)": 100 * summary["neg_gain_relative"],
        "accuracy kd - rcd (points)": 100 * (summary["kd_accuracy"] - summary["rcd_accuracy"]),
        "teacher generalisation gap (points)": summary["teacher_gap"],
    }
    names = list(quantities)
    colours = np.where(summary["significant_transfer"], ARM_COLOURS["kd"], "#aaaaaa")
    fig = go.Figure(go.Bar(x=summary["id"], y=quantities[names[0]], marker_color=colours,
                           hovertemplate="%{x}: %{y:.2f}<extra></extra>"))
    fig.update_layout(
        title={"text": "Across setups (red: significant kd > control agreement after BY correction)", "y": 0.97},
        yaxis_title=names[0], xaxis_title="setup", template="plotly_white", height=480, margin={"t": 110},
        updatemenus=[{"buttons": [{"label": n, "method": "update",
                                   "args": [{"y": [list(v)]}, {"yaxis": {"title": {"text": n}}}]}
                                  for n, v in quantities.items()],
                      "x": 0.0, "xanchor": "left", "y": 1.04, "yanchor": "bottom"}])
    return fig


def per_seed_tabs(results: pd.DataFrame, metrics):
    """An ipywidgets Tab with one per-seed table per arm; every tab is precomputed, so switching tabs
    works in the static book as well as in JupyterLab."""
    import ipywidgets as widgets

    arms = _arms(results, with_teacher=True)
    children = []
    for arm in arms:
        d = results[results.arm == arm].sort_values("seed")
        cols = ["seed"] + [m for m in metrics if m in d and d[m].notna().any()] + ["seconds"]
        children.append(widgets.HTML(d[cols].to_html(index=False, float_format=lambda v: f"{v:.4f}")))
    tabs = widgets.Tab(children=children)
    for i, arm in enumerate(arms):
        tabs.set_title(i, arm)
    return tabs
