"""The answer first: the study's findings in a few sentences and one headline figure, computed from the stored
runs at build time and written for the landing page (`book/generated/findings.md` and `findings.png`, which
`book/intro.md` includes). No number here is written by hand.

The figure is a forest plot of the kd - control agreement gain (points, 95 % t interval over seeds) of every
independent setup (own teachers and controls; backdoor entries and other KD objectives left out, as on the
claims page), grouped by scale, one panel per reading of the paper's alpha, with the share of the control's
disagreement that kd closes written beside each interval.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .regime import regime_rows

PAPER_LIKE = ("mid", "full", "paper")  # scales on the paper's own datasets, most paper-like last


def headline_rows(evidence) -> pd.DataFrame:
    """Independent setups of every scale under every reading (regime_rows), with the reading named."""
    frames = [regime_rows(evidence, w).assign(reading=w) for w in evidence.readings()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def sentences(evidence, rows: pd.DataFrame, matrix: pd.DataFrame | None = None) -> list[str]:
    """Three or four sentences: how often and how much kd transfers (main reading), the teacher's errors
    against its right answers, rcd against kd, and the verdicts on the paper's own datasets."""
    if rows.empty:
        return ["No independent setup is complete in this build, so there is nothing to report yet."]
    main = evidence.readings()[0]
    m = rows[rows["reading"] == main]
    out = []
    if len(m):
        sig = int(m["significant_transfer"].sum())
        head = ("No significant transfer." if sig == 0 else
                "Transfer is significant everywhere, and small in share." if sig == len(m) and m["share_closed"].median() < 0.25 else
                "Transfer is significant everywhere." if sig == len(m) else
                "Transfer is significant in some setups, not all.")
        out.append(
            f"**{head}** Under the main reading (KD weight w = {main:g}), kd students agree with "
            f"their teacher significantly more than seed-matched controls in {sig} of {len(m)} independent setups "
            f"({len(m['scale'].unique())} scale{'s' if m['scale'].nunique() > 1 else ''}); the gain is {m['gain_points'].median():+.1f} points at the median "
            f"(from {m['gain_points'].min():+.1f} to {m['gain_points'].max():+.1f}), closing "
            f"{_pct(m['share_closed'].median())} of the control's disagreement with its teacher at the median.")
    summaries = [s for sc in evidence.summaries.values() for s in sc
                 if s["kd_weight"] == main and s["objective"] == "hinton" and not s.get("has_backdoor")]
    ids = {(r.scale, r.id) for r in m.itertuples()}
    reps = [s for s in summaries if (s["scale"], s["id"]) in ids]
    both = [s for s in reps if np.isfinite(s["neg_share_closed"]) and np.isfinite(s["pos_share_closed"])]
    if both:
        more = sum(s["neg_share_closed"] > s["pos_share_closed"] for s in both)
        # a heading takes a side only where at least two thirds of the setups do
        head = ("The teacher's errors transfer more than its right answers." if 3 * more >= 2 * len(both) else
                "The teacher's right answers transfer more than its errors here." if 3 * more <= len(both) else
                "No consistent asymmetry between errors and right answers.")
        out.append(
            f"**{head}** Of the {len(both)} setup{'s' if len(both) > 1 else ''} where both can be measured, kd "
            f"closes a larger share of the control's headroom on the teacher's wrong answers (A-) than on its right "
            f"ones (A+) in {more} (median {_pct(np.median([s['neg_share_closed'] for s in both]))} against "
            f"{_pct(np.median([s['pos_share_closed'] for s in both]))}).")
    if reps:
        equiv = sum(bool(s["rcd_kd_equivalent"]) for s in reps)
        below = sum(bool(s["kd_beats_rcd_accuracy"]) for s in reps)
        head = ("Random control distillation reaches kd's accuracy in some setups." if equiv else
                "Random control distillation does not reach kd's accuracy.")
        out.append(
            f"**{head}** Random control distillation matches kd's accuracy within the margin "
            f"(TOST) in {equiv} of {len(reps)} setups, and is significantly less accurate than kd in {below}.")
    if matrix is not None and len(matrix):
        judged = ("supported", "not supported", "contradicted")
        cols = [c for s in PAPER_LIKE for c in matrix.columns if c == f"{s}, w={main:g}"]
        # the paper's own datasets with the most verdicts judged either way (the later scale on a tie)
        col = max(reversed(cols), key=lambda c: sum(v in judged for v in matrix[c]), default=None)
        if col is not None:
            verdicts = "; ".join(f"claim {k}: {v}" for k, v in matrix[col].items())
            out.append(f"**The paper's claims on its own datasets** ({col}): {verdicts}. Each is explained, with its "
                       "evidence, on the claims page.")
    return out


def _symlog(t: float) -> float:
    """Where a tick sits on the forest plot's symlog axis (linthresh 1), in decades."""
    return float(np.sign(t) * (1 + np.log10(abs(t)))) if abs(t) >= 1 else float(t)


def spaced_ticks(ticks: list, min_gap: float = 0.14) -> list:
    """Ticks that do not print over each other: kept from 0 outwards, each at least `min_gap` of the axis's
    span away from the last one kept on its side."""
    if not ticks:
        return ticks
    pos = {t: _symlog(t) for t in ticks}
    span = max(pos.values()) - min(pos.values()) or 1.0
    kept = [0] if 0 in pos else []
    for side in (sorted(t for t in ticks if t > 0), sorted((t for t in ticks if t < 0), reverse=True)):
        last = 0.0
        for t in side:
            if abs(pos[t] - last) >= min_gap * span:
                kept.append(t)
                last = pos[t]
    return sorted(kept)


def figure(rows: pd.DataFrame):
    """The forest plot: one row per independent setup, grouped by scale; one panel per reading."""
    import matplotlib.pyplot as plt

    readings = list(dict.fromkeys(rows["reading"]))
    order = rows.drop_duplicates(["scale", "id"])[["scale", "id"]]
    order = order.sort_values(["scale", "id"], key=lambda c: c.map({s: i for i, s in enumerate(
        [s for s in ("cpu", "mid", "full", "paper") if s in set(order["scale"])] +
        sorted(set(order["scale"]) - {"cpu", "mid", "full", "paper"}))}) if c.name == "scale" else c)
    labels = [f"{s}: {i}" for s, i in zip(order["scale"], order["id"])]
    pos = {k: len(labels) - 1 - n for n, k in enumerate(zip(order["scale"], order["id"]))}
    colours = dict(zip(order["scale"].unique(), plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, len(readings), figsize=(3.6 * len(readings) + 1.2, 0.32 * len(labels) + 1.4),
                             sharey=True, squeeze=False)
    for ax, w in zip(axes[0], readings):
        d = rows[rows["reading"] == w]
        for r in d.itertuples():
            y = pos[(r.scale, r.id)]
            ax.errorbar(r.gain_points, y, xerr=[[r.gain_points - r.gain_lo], [r.gain_hi - r.gain_points]], fmt="o",
                        ms=5, color=colours[r.scale], mfc=colours[r.scale] if r.significant_transfer else "white",
                        capsize=2, lw=1)
            ax.annotate(f"{100 * r.share_closed:.0f} %", (1.0, y), xycoords=("axes fraction", "data"),
                        xytext=(3, 0), textcoords="offset points", va="center", color="0.35")
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xscale("symlog", linthresh=1.0)
        ticks = spaced_ticks([t for t in (-50, -20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50)
                              if d["gain_lo"].min() - 1 <= t <= d["gain_hi"].max() + 1 or t == 0])
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_title(f"KD weight w = {w:g}" + (" (main reading)" if w == readings[0] else ""))
        ax.set_xlabel("agreement gain over the control (points)")
    axes[0][0].set_yticks(list(pos.values()), [labels[len(labels) - 1 - v] for v in pos.values()])
    axes[0][0].set_ylim(-0.7, len(labels) - 0.3)
    fig.text(0.995, 0.01, "beside each: share of the control's disagreement closed; filled: significant",
             ha="right", va="bottom", color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def write(out_dir: Path, evidence, matrix: pd.DataFrame | None = None) -> Path:
    """findings.md (an admonition with the sentences and the figure) and findings.png in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = headline_rows(evidence)
    text = sentences(evidence, rows, matrix)
    body = "\n\n".join(text)
    if len(rows):
        from .figures import STYLE

        with plt.rc_context(STYLE):
            fig = figure(rows)
            fig.savefig(out_dir / "findings.png", bbox_inches="tight")
            plt.close(fig)
        # the path as the including page (book/intro.md) sees it
        body += ("\n\n```{figure} generated/findings.png\n:alt: forest plot of the kd - control agreement gain per setup\n\n"
                 "The kd - control agreement gain (points, 95 % interval over seeds) of every independent setup, "
                 "by scale, under each reading of the paper's alpha; beside each, the share of the control's "
                 "disagreement with its teacher that kd closes (details: the chapter on the regime).\n```")
    path = out_dir / "findings.md"
    path.write_text("````{admonition} The answer, computed from this build's runs\n:class: tip\n\n" + body + "\n````\n")
    return path
