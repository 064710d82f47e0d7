"""The book's figures and interactive views, one function per figure kind. Colours per arm are fixed."""
from __future__ import annotations

import json
import uuid

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .setup_analysis import PERCENT_METRICS, arms_present, paired_shares, transfer_table, weight_curve
from .formatting import LABELS, short_label
from ..stats import measured

# Legibility: the book's text column is COLUMN_PX wide in a 1000 px window; a figure wider than that is
# scaled down to it, so text of `size` points in a figure saved `width` px wide is shown at
# size / 72 * DPI * min(1, COLUMN_PX / width) px. With 10-point text, figures up to about 10 inches wide
# keep every label at MIN_TEXT_PX or more (`small_text` checks a figure; the tests check every kind).
DPI = 110
COLUMN_PX = 736
MIN_TEXT_PX = 10.0
STYLE = {"figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10,
         "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 10,
         "figure.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False}


def book_style() -> None:
    """The book's figure style (sizes above), for a notebook's figures."""
    matplotlib.rcParams.update(STYLE)


def small_text(fig, column_px: int = COLUMN_PX, min_px: float = MIN_TEXT_PX) -> list[tuple[str, float]]:
    """The texts of `fig` (tick labels, titles, legends, annotations) a reader would see below `min_px`
    pixels once the figure, saved with a tight box as the notebooks save it, is fitted to the column."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width_px = (fig.get_tightbbox(renderer).width + 2 * matplotlib.rcParams["savefig.pad_inches"]) * fig.dpi
    scale = min(1.0, column_px / width_px)
    out = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and t.get_window_extent(renderer).width > 0:
            px = t.get_fontsize() / 72 * fig.dpi * scale
            if px < min_px:
                out.append((t.get_text()[:40], round(px, 1)))
    return out


ARM_COLOURS = {"teacher": "#555555", "control": "#1f77b4", "kd": "#d62728", "rcd": "#2ca02c"}
RCD_COLOURS = {"unit_fixed": "#2ca02c", "unit_resampled": "#98df8a", "teacher_scaled": "#8c564b", "permuted": "#bcbd22"}


def _values(d: pd.DataFrame, metric: str) -> pd.Series:
    return d[metric] * (100.0 if metric in PERCENT_METRICS else 1.0)


def per_seed_figure(results: pd.DataFrame, metrics=("agreement", "js_divergence", "accuracy")):
    """Per-seed values by arm; grey lines join the arms of one seed (the pairing of the tests)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        arms = arms_present(results, with_teacher=m in ("accuracy", "backdoor_asr", "backdoor_lift"))
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
        ax.set_title(short_label(m))
    fig.suptitle("Per-seed results (black: mean ± SEM)")
    fig.tight_layout()
    return fig


def transfer_figure(results: pd.DataFrame):
    """A+ and A- by arm (top) and their change over the control with the control's headroom (bottom)."""
    arms = arms_present(results, with_teacher=False)
    table = transfer_table(results)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.5, 7.5))
    width = 0.38
    for j, (key, label) in enumerate((("pos_agreement", "A+"), ("neg_agreement", "A-"))):
        means = table.loc[key, arms]
        sems = [100 * results.loc[results.arm == a, key].sem() for a in arms]
        ax1.bar(np.arange(len(arms)) + (j - 0.5) * width, means, width, yerr=sems, capsize=3,
                color=[ARM_COLOURS[a] for a in arms], alpha=1.0 if j == 0 else 0.55,
                hatch=None if j == 0 else "//", edgecolor="black",
                label=f"{label} (teacher {'right' if j == 0 else 'wrong'})")
    ax1.set_xticks(range(len(arms)), arms)
    ax1.set_xlabel("arm")
    ax1.set_ylabel("agreement with teacher (%)")
    ax1.set_title("positive (A+, solid) and negative (A-, hatched) agreement")
    ax1.legend(loc="lower left")
    students = [a for a in arms if a != "control"]
    for j, (key, label) in enumerate((("pos_gain_points", "ΔA+"), ("neg_gain_points", "ΔA-"))):
        deltas = table.loc[key, students]
        ax2.bar(np.arange(len(students)) + (j - 0.5) * width, deltas, width,
                color=[ARM_COLOURS[a] for a in students], alpha=1.0 if j == 0 else 0.55,
                hatch=None if j == 0 else "//", edgecolor="black", label=label)
    ax2.axhline(0, color="black", lw=0.8)
    head_pos, head_neg = table.loc["pos_headroom", "control"], table.loc["neg_headroom", "control"]
    ax2.set_xticks(range(len(students)), students)
    ax2.set_xlabel("arm")
    ax2.set_ylabel("change over control (points)")
    ax2.set_title(f"headroom: 1-A+(control) = {head_pos:.1f}, 1-A-(control) = {head_neg:.1f} points")
    ax2.legend()
    fig.tight_layout()
    return fig


def gap_figure(results: pd.DataFrame):
    arms = arms_present(results)
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


def metric_explorer(results: pd.DataFrame, metrics):
    """Per-seed values by arm with a dropdown that switches the metric (runs in the browser). No plotly
    title: plotly does not wrap one, so a long title is clipped in a narrow column; the page's text says
    what the chart shows."""
    import plotly.graph_objects as go

    arms = arms_present(results)
    fig = go.Figure()
    for arm in arms:
        d = results[results.arm == arm]
        fig.add_trace(go.Box(y=_values(d, metrics[0]), name=arm, boxpoints="all", pointpos=0, jitter=0.3,
                             marker_color=ARM_COLOURS[arm], text=[f"seed {s}" for s in d.seed],
                             hovertemplate="%{text}: %{y:.4f}<extra>" + arm + "</extra>"))
    buttons = []
    for m in metrics:
        ys = [list(_values(results[results.arm == a], m)) if measured(results[results.arm == a], m) else [] for a in arms]
        buttons.append({"label": LABELS.get(m, m), "method": "update",
                        "args": [{"y": ys}, {"yaxis": {"title": {"text": LABELS.get(m, m)}}}]})
    fig.update_layout(yaxis_title=LABELS.get(metrics[0], metrics[0]),
                      xaxis_title="arm", showlegend=False, height=440, margin={"t": 60}, template="plotly_white",
                      updatemenus=[{"buttons": buttons, "x": 0.0, "xanchor": "left", "y": 1.04, "yanchor": "bottom"}])
    return fig


def summary_explorer(summary: pd.DataFrame):
    """One bar per setup; a dropdown picks the quantity (ΔA- / ΔA+, accuracies; the agreement gain has its
    own chart with intervals above it, so it is not drawn twice). No plotly title (see `metric_explorer`)."""
    import plotly.graph_objects as go

    quantities = {
        "ΔA- kd - control (points)": summary["neg_gain_points"],
        "ΔA+ kd - control (points)": summary["pos_gain_points"],
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
        yaxis_title=names[0], xaxis_title="setup", template="plotly_white", height=460, margin={"t": 60},
        updatemenus=[{"buttons": [{"label": n, "method": "update",
                                   "args": [{"y": [list(v)]}, {"yaxis": {"title": {"text": n}}}]}
                                  for n, v in quantities.items()],
                      "x": 0.0, "xanchor": "left", "y": 1.04, "yanchor": "bottom"}])
    return fig


def per_seed_table(d: pd.DataFrame, metrics) -> pd.DataFrame:
    """One arm's runs, a row per seed, in the book's units with short labels (eight columns share a tab)."""
    t = pd.DataFrame({"seed": d["seed"].astype(int).to_numpy()})
    for m in metrics:
        if measured(d, m):
            t[short_label(m)] = _values(d, m).to_numpy()
    t[short_label("seconds")] = d["seconds"].to_numpy()
    return t


def per_seed_tabs(results: pd.DataFrame, metrics):
    """An ipywidgets Tab with one per-seed table per arm; every tab is precomputed, so switching tabs
    works in the static book as well as in JupyterLab."""
    import ipywidgets as widgets

    arms = arms_present(results)
    children = []
    for arm in arms:
        t = per_seed_table(results[results.arm == arm].sort_values("seed"), metrics)
        fmt = {c: ("{:.0f}" if c == "seed" else "{:.1f}" if c == short_label("seconds") else
                   "{:.2f}" if "(%)" in c or "points" in c else "{:.4g}") for c in t.columns}
        children.append(widgets.HTML(t.style.format(fmt).hide(axis="index").to_html()))
    tabs = widgets.Tab(children=children)
    for i, arm in enumerate(arms):
        tabs.set_title(i, arm)
    return tabs


# --------------------------------------------------------------------------------- training and readings
def loss_curves(results: pd.DataFrame, epoch_logs: dict):
    """Training loss per epoch, mean over seeds per arm (left: total; right: its terms for kd / rcd), so
    a reader sees whether every arm's loss has flattened by the last epoch."""
    arms = arms_present(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for arm in arms:
        logs = [epoch_logs[h] for h in results.loc[results.arm == arm, "hash"] if h in epoch_logs]
        if not logs:
            continue
        n = min(len(log) for log in logs)
        curve = np.mean([[e["loss"] for e in log[:n]] for log in logs], axis=0)
        ax1.plot(range(1, n + 1), curve, color=ARM_COLOURS[arm], label=arm, marker="o" if n < 15 else None, ms=3)
        if arm in ("kd", "rcd"):
            for term, ls in (("ce", "-"), ("kd", "--"), ("tckd", "--"), ("nckd", "-."), ("feature", ":")):
                if term in logs[0][0]:
                    ax2.plot(range(1, n + 1), np.mean([[e[term] for e in log[:n]] for log in logs], axis=0),
                             color=ARM_COLOURS[arm], ls=ls, label=f"{arm}: {term}")
    for ax, title in ((ax1, "training loss (mean over seeds)"), (ax2, "loss terms of kd and rcd")):
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (nats)")
        ax.set_title(title)
        if ax.lines:
            ax.set_yscale("log")
            ax.legend()
    fig.tight_layout()
    return fig


def paired_differences(results: pd.DataFrame, metric: str = "accuracy", confidence: float = 0.95) -> pd.DataFrame:
    """Per KD weight, the seed-paired differences the claims rest on, in points: kd - control and, for
    each RCD noise, rcd - kd; mean with a t confidence interval over seeds."""
    from scipy import stats as st

    def by_seed(d):
        return d.set_index("seed")[metric]

    ctrl = by_seed(results[results.arm == "control"])
    rows = []
    for w in sorted(results["kd_weight"].dropna().unique()):
        kd = by_seed(results[(results.arm == "kd") & (results.kd_weight == w)])
        pairs = [("kd - control", kd, ctrl)]
        for noise in sorted(results.loc[(results.arm == "rcd") & (results.kd_weight == w), "rcd_noise"].unique()):
            rcd = by_seed(results[(results.arm == "rcd") & (results.kd_weight == w) & (results.rcd_noise == noise)])
            pairs.append((f"rcd: {noise} - kd", rcd, kd))
        for name, a, b in pairs:
            d = 100 * (a - b).dropna()
            n = len(d)
            half = st.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
            rows.append({"difference": name, "kd_weight": w, "mean": d.mean() if n else float("nan"), "half_width": half, "n": n})
    return pd.DataFrame(rows)


def _difference_colour(name: str) -> str:
    if name == "kd - control":
        return ARM_COLOURS["control"]
    return RCD_COLOURS.get(name.split(": ")[1].split(" - ")[0], "0.5")


def weight_curve_figure(results: pd.DataFrame):
    """Top: accuracy and agreement of kd and of each RCD noise against the KD weight w, with the control
    as a dotted line drawn above the curves (it sits close to kd). Bottom: the seed-paired differences
    rcd - kd and kd - control in accuracy with 95 % confidence intervals, on a scale where a one-point
    difference at w = 0.1 is visible."""
    wc = weight_curve(results)
    fig = plt.figure(figsize=(9, 8.2))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.05])
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
    for ax, m in zip(axes, ("accuracy", "agreement")):
        for name, d in wc.groupby("arm_noise"):
            colour = ARM_COLOURS["kd"] if name == "kd" else RCD_COLOURS.get(name.split(": ")[1], "0.5")
            d = d.sort_values("kd_weight")
            ax.errorbar(d["kd_weight"], 100 * d[f"{m}_mean"], yerr=100 * d[f"{m}_sem"], color=colour,
                        marker="o", capsize=3, label=name, lw=2.2 if name == "kd" else 1.2, zorder=2)
        ctrl = results.loc[results.arm == "control", m]
        if len(ctrl):  # the control has no KD weight: one level, drawn on top so kd does not hide it
            ax.axhline(100 * ctrl.mean(), color=ARM_COLOURS["control"], ls=(0, (2, 2)), lw=1.6, label="control", zorder=4)
        ax.set_xlabel("KD weight w")
        ax.set_ylabel(LABELS[m])
        ax.set_title(f"{m} (mean ± SEM over seeds)")
        ax.legend(loc="best")
    ax = fig.add_subplot(grid[1, :])
    diffs = paired_differences(results, "accuracy")
    names = list(dict.fromkeys(diffs["difference"]))
    offsets = np.linspace(-0.012, 0.012, max(1, len(names)))  # side by side at each w, not on top of each other
    for off, name in zip(offsets, names):
        d = diffs[diffs["difference"] == name].sort_values("kd_weight")
        ax.errorbar(d["kd_weight"] + off, d["mean"], yerr=d["half_width"], color=_difference_colour(name),
                    marker="s" if name == "kd - control" else "o", capsize=3, lw=1.4, label=name)
    ax.axhline(0, color="black", lw=0.8)
    # linear within ±2 points, logarithmic beyond: a 1-point difference stays visible beside an RCD
    # collapse of 80 points
    ax.set_yscale("symlog", linthresh=2.0, linscale=1.5)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:+g}" if v else "0"))
    ax.grid(axis="y", color="0.92", lw=0.8)
    ax.set_xlabel("KD weight w  (loss = (1 - w) CE + w T² KL)")
    ax.set_ylabel("accuracy difference (points)\nlinear within ±2, log beyond")
    ax.set_title("seed-paired accuracy differences (mean, 95 % CI): above 0, the first arm is more accurate")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def headroom_figure(results: pd.DataFrame, min_disagreements: int = 1):
    """Per seed: the share of the control's headroom kd closes on the teacher's right (A+) and wrong (A-)
    answers, on the seeds where both are defined; lines join a seed's pair (the pairing of the asymmetry test)."""
    s = paired_shares(results, "kd", min_disagreements)
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for _, row in s.iterrows():
        ax.plot([0, 1], [row["pos_share"], row["neg_share"]], color="0.75", lw=0.8, marker="o", ms=4)
    ax.errorbar([0, 1], [s["pos_share"].mean(), s["neg_share"].mean()],
                yerr=[s["pos_share"].sem(), s["neg_share"].sem()], fmt="_", color=ARM_COLOURS["kd"], ms=24, capsize=5)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks([0, 1], ["A+ (teacher right)", "A- (teacher wrong)"])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel("share of control's headroom kd closes")
    ax.set_title("asymmetry, judged on headroom")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- across setups
def gain_by_setup(summary: pd.DataFrame):
    """The agreement gain of kd over control per setup (filled: significant in the primary family), a row per
    setup: the figure grows in height, not width, with the number of setups, so its labels stay legible."""
    colours = [ARM_COLOURS["kd"] if s else "white" for s in summary["significant_transfer"]]
    n = len(summary)
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * n + 1.3))
    ax.barh(np.arange(n), summary["agreement_gain_points"], color=colours, edgecolor=ARM_COLOURS["kd"])
    ax.set_yticks(np.arange(n), summary["id"])
    ax.set_ylim(n - 0.5, -0.5)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("agreement kd - control (points)")
    ax.grid(axis="x", color="0.92", lw=0.8)
    fig.tight_layout()
    return fig


def _clusters(x: np.ndarray, y: np.ndarray, tol: float) -> list[list[int]]:
    """Indices of points closer than `tol` (in axis fractions) to a cluster's first point, in order."""
    out: list[list[int]] = []
    for i in range(len(x)):
        for c in out:
            if abs(x[c[0]] - x[i]) < tol and abs(y[c[0]] - y[i]) < tol:
                c.append(i)
                break
        else:
            out.append([i])
    return out


MARKER_AREA = 70  # points², matplotlib's scatter size
ASYMMETRY_LIMIT = 1.0  # a share beyond it (a control with almost no headroom) is drawn at the edge


# Where a group's label may sit around its anchor point, in order of preference: (dx, dy) in points, ha, va.
LABEL_PLACES = ((7, 5, "left", "bottom"), (7, -5, "left", "top"), (-7, 5, "right", "bottom"),
                (-7, -5, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"))


def _label_groups(ax, px: np.ndarray, py: np.ndarray, groups: list[list[int]]) -> None:
    """One numbered label per group of points, beside the group's most central point. A label that would
    print over one already placed tries the other sides of its point first; only where no side is free is
    its group merged with the nearest group (labels are measured once drawn, so this holds at any number of
    points, and a merged label still sits beside points it names)."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    xy = ax.transData.transform(np.column_stack([px, py]))  # pixels: nearness as the reader sees it
    r = np.sqrt(MARKER_AREA) * ax.figure.dpi / 72 / 2  # a marker's radius in pixels

    def anchor(idx: list[int]) -> int:
        centre = xy[idx].mean(axis=0)
        return idx[int(np.argmin(np.hypot(*(xy[idx] - centre).T)))]

    while True:
        placed: list = []
        boxes: list = []
        clash = None
        for g, idx in enumerate(groups):
            numbers = [str(i + 1) for i in sorted(idx)]
            text = ",\n".join(", ".join(numbers[j:j + 6]) for j in range(0, len(numbers), 6))
            a = anchor(idx)
            free = None
            # A side within the axes and clear of every marker first, then within the axes, then any side;
            # never over another label.
            for need_inside, need_clear in ((True, True), (True, False), (False, False)):
                for dx, dy, ha, va in LABEL_PLACES:
                    note = ax.annotate(text, (px[a], py[a]), xytext=(dx, dy), textcoords="offset points",
                                       ha=ha, va=va)
                    box = note.get_window_extent(renderer)
                    inside = box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
                    clear = not bool(np.any((xy[:, 0] > box.x0 - r) & (xy[:, 0] < box.x1 + r)
                                            & (xy[:, 1] > box.y0 - r) & (xy[:, 1] < box.y1 + r)))
                    if (inside or not need_inside) and (clear or not need_clear) and not any(
                            box.overlaps(b) for b in boxes):
                        free = (note, box)
                        break
                    note.remove()
                if free:
                    break
            if free is None:
                clash = g
                break
            placed.append(free[0])
            boxes.append(free[1])
        if clash is None:
            _lead_stray_labels(ax, xy, groups, [anchor(idx) for idx in groups], boxes)
            return
        for n in placed:
            n.remove()
        here = xy[anchor(groups[clash])]
        nearest = min(range(clash), key=lambda g: float(np.hypot(*(xy[anchor(groups[g])] - here))))
        groups[nearest] = groups[nearest] + groups.pop(clash)


def _box_distance(box, points: np.ndarray) -> np.ndarray:
    """Pixels from a label's box to each point (0 inside it)."""
    dx = np.maximum.reduce([box.x0 - points[:, 0], np.zeros(len(points)), points[:, 0] - box.x1])
    dy = np.maximum.reduce([box.y0 - points[:, 1], np.zeros(len(points)), points[:, 1] - box.y1])
    return np.hypot(dx, dy)


def _lead_stray_labels(ax, xy: np.ndarray, groups: list[list[int]], anchors: list[int], boxes: list) -> None:
    """A hairline from a label to its point where the label sits nearer a point it does not name than any it
    names (a crowd pushed it aside), so the reader is not left to guess. Drawn after placement, so leaders
    never enlarge a label's box and force merges."""
    to_data = ax.transData.inverted()
    for idx, a, box in zip(groups, anchors, boxes):
        near = _box_distance(box, xy)
        others = np.delete(near, idx)
        others = others[np.isfinite(others)]  # undefined shares have no point
        if not len(others) or others.min() >= near[idx].min():
            continue
        # from the box's edge point nearest the anchor, to the anchor
        edge = (np.clip(xy[a, 0], box.x0, box.x1), np.clip(xy[a, 1], box.y0, box.y1))
        (x0, y0), (x1, y1) = to_data.transform([edge, xy[a]])
        ax.plot([x0, x1], [y0, y1], color="0.45", lw=0.6, zorder=2, gid="asymmetry-leader")


def asymmetry_by_setup(summary: pd.DataFrame, limit: float = ASYMMETRY_LIMIT):
    """Share of headroom closed on A- against A+ per setup; above the diagonal kd copies the teacher's
    errors more than its right answers, beyond what the lower starting point of A- explains. Points carry
    numbers (one label per group of nearby points) and the key beside the axes names them, so labels
    never print over each other; a label a crowd pushed nearer another point has a hairline to its own. A
    share beyond +-`limit` is drawn at the edge as a triangle and its value given in the key, so one setup
    with almost no headroom does not squeeze all the others into a corner."""
    colours = [ARM_COLOURS["kd"] if s else "white" for s in summary["significant_transfer"]]
    x, y = summary["pos_share_closed"].to_numpy(float), summary["neg_share_closed"].to_numpy(float)
    off = (np.abs(x) > limit) | (np.abs(y) > limit)
    px, py = np.clip(x, -limit, limit), np.clip(y, -limit, limit)
    fig, (ax, key_ax) = plt.subplots(1, 2, figsize=(9.4, max(5.0, 0.2 * len(summary) + 1.2)),
                                     gridspec_kw={"width_ratios": [1.25, 1]})
    for mask, marker in ((~off, "o"), (off, "^")):
        ax.scatter(px[mask], py[mask], c=[c for c, m in zip(colours, mask) if m], edgecolors=ARM_COLOURS["kd"],
                   s=MARKER_AREA, marker=marker, zorder=3)
    finite = np.concatenate([px[np.isfinite(px)], py[np.isfinite(py)], [0.0]])
    lo, hi = finite.min() - 0.05, finite.max() + 0.05
    ax.plot([lo, hi], [lo, hi], color="0.6", ls="--", lw=1)
    ax.axhline(0, color="0.85", lw=0.8)
    ax.axvline(0, color="0.85", lw=0.8)
    pad = 0.03 * (hi - lo)
    ax.set_xlim(lo - pad, hi + 3 * pad)  # room for the labels right of and above the points
    ax.set_ylim(lo - pad, hi + 3 * pad)
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    key = []
    for i, name in enumerate(summary["id"]):
        note = "" if i in ok else "  (undefined)"
        if i in ok and off[i]:
            note = f"  (A+ {x[i]:.2g}, A- {y[i]:.2g})"
        key.append(f"{i + 1:>{len(str(len(summary)))}}  {name}{note}")
    key_ax.axis("off")  # the key has its own axes beside the chart: tight_layout keeps room for both
    key_ax.text(0.0, 1.0, "\n".join(key), transform=key_ax.transAxes, va="top", family="monospace")
    ax.set_xlabel("share of A+ headroom kd closes")
    ax.set_ylabel("share of A- headroom kd closes")
    title = "above the diagonal: errors copied more\n(filled: significant transfer"
    ax.set_title(title + (f"; \u25b3: beyond \u00b1{limit:g}, value in the key)" if off.any() else ")"))
    fig.tight_layout()  # before the labels: their overlaps are measured where they will be drawn
    span = max(hi - lo, 1e-9)
    groups = _clusters((px[ok] - lo) / span, (py[ok] - lo) / span, 0.04)
    _label_groups(ax, px, py, [[int(ok[i]) for i in c] for c in groups])
    return fig


def accuracy_by_setup(summary: pd.DataFrame):
    """Control, kd and rcd test accuracy per setup, a row of three bars per setup (grows in height)."""
    n = len(summary)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * n + 1.4))
    width = 0.27
    for j, arm in enumerate(("control", "kd", "rcd")):
        ax.barh(np.arange(n) + (j - 1) * width, 100 * summary[f"{arm}_accuracy"], width,
                color=ARM_COLOURS[arm], label=arm)
    ax.set_yticks(range(n), summary["id"])
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("test accuracy (%)")
    lo = np.nanmin(100 * summary[["control_accuracy", "kd_accuracy", "rcd_accuracy"]].to_numpy())
    ax.set_xlim(max(0, lo - 10), 100)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return fig
