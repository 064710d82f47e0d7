# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
scale = "cpu"
results = "results/cpu"
study_file = None

# %% tags=["remove-cell"]
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from kdlib import load_study
from kdlib import plots
from kdlib.paths import from_root
from kdlib.analysis import collect_summaries
from kdlib.store import RunStore

matplotlib.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False})
study = load_study(study_file)
summaries, missing = collect_summaries(study, scale, RunStore(from_root(results) / "runs"))
summary = pd.DataFrame(summaries)

# %% [markdown]
# Each row is one setup of the study (main RCD noise). *Significant transfer* means the kd student agrees
# with its teacher significantly more than the control does (one-sided Wilcoxon, BY-corrected within the
# setup, alpha = 0.05). ΔA+ / ΔA- are kd minus control, in points and relative to the control.

# %% tags=["remove-input"]
if missing:
    display(Markdown(f"**Not yet run (left out):** {', '.join(missing)}"))
accuracy_table = pd.DataFrame({
    "setup": summary["id"], "modality": summary["modality"], "seeds": summary["n_seeds"],
    "teacher acc (%)": 100 * summary["teacher_accuracy"], "teacher errors": summary["teacher_errors"],
    "control / kd / rcd acc (%)": [f"{100 * c:.1f} / {100 * k:.1f} / {100 * r:.1f}" for c, k, r in
                                   zip(summary["control_accuracy"], summary["kd_accuracy"], summary["rcd_accuracy"])],
    "agreement gain (points)": summary["agreement_gain_points"], "p (BY)": summary["agreement_p_by"],
    "significant transfer": np.where(summary["significant_transfer"], "yes", "no"),
})
display(accuracy_table.style.format({"teacher acc (%)": "{:.1f}", "teacher errors": "{:.0f}",
                                     "agreement gain (points)": "{:+.2f}", "p (BY)": "{:.2g}"}).hide(axis="index"))

# %% [markdown]
# ## Positive and negative transfer per setup
# Change of A+ (agreement where the teacher is right) and A- (the student repeats the teacher's wrong
# label) of kd over control, with the control's headroom; and whether kd is significantly more accurate
# than random control distillation.

# %% tags=["remove-input"]
transfer = pd.DataFrame({
    "setup": summary["id"], "significant transfer": np.where(summary["significant_transfer"], "yes", "no"),
    "ΔA+ (points)": summary["pos_gain_points"], "ΔA- (points)": summary["neg_gain_points"],
    "ΔA+ rel (%)": 100 * summary["pos_gain_relative"], "ΔA- rel (%)": 100 * summary["neg_gain_relative"],
    "headroom A+ / A- (%)": [f"{100 * p:.1f} / {100 * n:.1f}" for p, n in zip(summary["pos_headroom"], summary["neg_headroom"])],
    "kd > rcd in accuracy": np.where(summary["kd_beats_rcd_accuracy"], "yes", "no"),
})
display(transfer.style.format({"ΔA+ (points)": "{:+.2f}", "ΔA- (points)": "{:+.2f}", "ΔA+ rel (%)": "{:+.1f}",
                               "ΔA- rel (%)": "{:+.1f}"}).hide(axis="index"))

# %% [markdown]
# ## Transfer and its asymmetry
# The agreement gain of kd over control per setup (filled: significant after correction):

# %% tags=["remove-input"]
colours = [plots.ARM_COLOURS["kd"] if s else "white" for s in summary["significant_transfer"]]
fig, ax1 = plt.subplots(figsize=(9, 4))
ax1.bar(summary["id"], summary["agreement_gain_points"], color=colours, edgecolor=plots.ARM_COLOURS["kd"])
ax1.axhline(0, color="black", lw=0.8)
ax1.set_ylabel("agreement kd - control (points)")
ax1.set_xlabel("setup")
ax1.tick_params(axis="x", rotation=35)
for tick in ax1.get_xticklabels():
    tick.set_horizontalalignment("right")
fig.tight_layout()

# %% [markdown]
# The relative change of A- against that of A+; setups above the diagonal copy the teacher's errors more
# than its right answers (filled: significant transfer).

# %% tags=["remove-input"]
fig, ax2 = plt.subplots(figsize=(8, 6))
x, y = 100 * summary["pos_gain_relative"], 100 * summary["neg_gain_relative"]
ax2.scatter(x, y, c=colours, edgecolors=plots.ARM_COLOURS["kd"], s=70, zorder=3)
for i, (xi, yi, name) in enumerate(zip(x, y, summary["id"])):
    ax2.annotate(name, (xi, yi), fontsize=8, xytext=(6, 6 - 12 * (i % 2)), textcoords="offset points")
lo, hi = min(x.min(), y.min(), 0) - 2, max(x.max(), y.max(), 0) + 2
ax2.plot([lo, hi], [lo, hi], color="0.6", ls="--", lw=1)
ax2.axhline(0, color="0.85", lw=0.8)
ax2.axvline(0, color="0.85", lw=0.8)
ax2.set_xlabel("ΔA+ relative to control (%)")
ax2.set_ylabel("ΔA- relative to control (%)")
ax2.set_title("asymmetry: above the diagonal = more negative than positive transfer")
fig.tight_layout()

# %% [markdown]
# Pick the quantity in the menu:

# %% tags=["remove-input"]
plots.show_plotly(plots.summary_explorer(summary))

# %% [markdown]
# ## KD against random control distillation
# Accuracy of control, kd and rcd per setup. Where rcd matches kd, the teacher's function adds little
# beyond what any soft target does as a regulariser.

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(10, 3.6))
width = 0.27
for j, arm in enumerate(("control", "kd", "rcd")):
    ax.bar(np.arange(len(summary)) + (j - 1) * width, 100 * summary[f"{arm}_accuracy"], width,
           color=plots.ARM_COLOURS[arm], label=arm)
ax.set_xticks(range(len(summary)), summary["id"], rotation=30, ha="right")
ax.set_ylabel("test accuracy (%)")
ax.set_xlabel("setup")
ax.legend()
fig.tight_layout()
