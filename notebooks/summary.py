# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["remove-cell"]
_names_before_parameters = set(globals())

# %% tags=["parameters"]
scale = "cpu"
results_dir = None   # the run store of this scale (default: the scale's, e.g. results/cpu)
study_file = None
book_scale = None
shipped = []         # scales whose shipped runs this book shows beside its own (e.g. [mid, paper])

# %% tags=["remove-cell"]
from kdlib.book.notebooks import check_parameters  # a misspelled parameter stops the chapter here

check_parameters(globals(), _names_before_parameters, "summary")

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from kdlib.book import figures
from kdlib.book.evidence import BookEvidence

figures.book_style()  # the book's legible figure sizes (kdlib.book.figures.STYLE)
evidence = BookEvidence.load(study_file, scale, results_dir, shipped)

# %% tags=["remove-input"]
main_w, other_ws = evidence.readings()[0], evidence.other_readings()
display(Markdown(
    f"Each row is one plan entry (a setup or a sweep of one) under the main reading of the KD weight (w = {main_w:g}: "
    f"the KD term weighted {main_w:g}). *Significant transfer* means the kd student agrees with its teacher "
    "significantly more than the control does (primary family, exact one-sided Wilcoxon, BY-corrected within the "
    "setup, alpha = 0.05); *not testable* that the test cannot reach significance after that correction with the "
    "non-zero differences it kept. Chapters of the scales listed last were computed elsewhere and shipped with "
    "the book; they are the closest to the paper's setups here. Entries distilled with another KD objective than "
    "Hinton's are compared with it in [KD objectives under the paper's controls](objectives.ipynb)."))

# %% tags=["remove-input"]
display(Markdown(evidence.status()))
for label, summary in evidence.main_tables():
    display(Markdown(f"### {label}"))
    display(evidence.overview(summary))

# %% [markdown]
# ## Positive and negative transfer per setup
# Change of A+ and A- of kd over control (points), the control's headroom, and the share of that headroom
# kd closes on each: the asymmetry the paper reports is judged on the shares, since A- starts lower. The
# shares are means of per-seed shares over the seeds where both are defined (a seed whose control disagrees
# with its teacher on fewer examples of a subset than `min_disagreements` has none there): the same seeds
# and estimator as the test beside them.

# %% tags=["remove-input"]
for label, summary in evidence.main_tables():
    display(Markdown(f"### {label}"))
    display(evidence.transfer(summary))

# %% [markdown]
# ## Transfer and its asymmetry
# The agreement gain of kd over control per setup (filled: significant in the primary family):

# %% tags=["remove-input"]
allmain = evidence.all_main()
fig = figures.gain_by_setup(allmain)

# %% [markdown]
# The share of the control's headroom kd closes on the teacher's errors (A-) against its right answers
# (A+); above the diagonal, kd copies errors more than right answers beyond what the lower starting point
# of A- explains:

# %% tags=["remove-input"]
fig = figures.asymmetry_by_setup(allmain)

# %% [markdown]
# The other quantities across setups, one at a time (pick it in the menu above the chart; red bars: significant
# kd > control agreement after BY correction):

# %% tags=["remove-input"]
figures.show_plotly(figures.summary_explorer(allmain))

# %% [markdown]
# ## KD against random control distillation
# Accuracy of control, kd and rcd per setup. Where rcd matches kd, the teacher's function adds little beyond
# what any soft target does as a regulariser; the claims page tests this with an equivalence margin.

# %% tags=["remove-input"]
fig = figures.accuracy_by_setup(allmain)

# %% [markdown]
# ## The readings of alpha
# The same entries under the study file's other readings of the KD weight (the methods say whose reading
# each one is; one of them is the authors' earlier code, in which alpha weights the cross-entropy):

# %% tags=["remove-input"]
for w in other_ws:
    for label, summary in evidence.reading_tables(w):
        display(Markdown(f"### {label}"))
        display(evidence.overview(summary))

# %% tags=["remove-input"]
curve = evidence.weight_curve_entry()
if curve is not None:
    curve_scale, curve_entry, curve_results = curve
    display(Markdown(f"kd and rcd against the KD weight, for every RCD noise, in the entry that ran the weight sweep: "
                     f"**{curve_entry}** ({evidence.label(curve_scale)}). The lower panel shows the seed-paired accuracy "
                     "differences that the claims test (claim 4 compares rcd with kd), on a scale where a difference of "
                     "one point is visible; an interval that excludes 0 is a difference the seeds agree on."))
    fig = figures.weight_curve_figure(curve_results)
else:
    display(Markdown("No entry of this build ran three or more KD weights."))
