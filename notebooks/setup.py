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
# Parameters (python -m kdlib.chapters setup OUT.ipynb -p NAME VALUE). None: the study file's value.
entry_id = None          # the plan entry (defaults to the setup name)
setup = "digits-mlp-self"
scale = "cpu"
n_seeds = None
kd_weight = None         # weight of the KD term: (1 - w) CE + w T^2 KL
alpha = None             # the same parameter under the paper's name (the KD-term weight)
kd_weight_variants = None  # other readings run beside it, e.g. [0.1]
temperature = None
epochs = None
rcd_noise = None
rcd_variants = None      # e.g. [unit_resampled, permuted]: RCD noises side by side
variant = None           # logit, fitnets or attention
variant_args = None      # e.g. {student_layer: features.3, teacher_layer: features.3, beta: 1.0}
objective = None         # the KD term of kd and rcd: hinton (the paper's) or dkd
objective_args = None    # e.g. {alpha: 1.0, beta: 8.0} for dkd
student_args = None      # standard distillation: the student's size, e.g. {hidden: [8]}
backdoor = None          # a backdoored teacher, e.g. {target: 0, poison_fraction: 0.1, patch: 3}
recipe = None            # paper setups: authors or fast
device = "auto"
train_missing = True     # train runs missing from the store (False for shipped results)
results_dir = None       # the run store's folder (default: the scale's, e.g. results/cpu)
study_file = None
book_scale = None        # the scale of the book this chapter belongs to

# %% tags=["remove-cell"]
from kdlib.book.notebooks import check_parameters  # a misspelled parameter stops the chapter here

check_parameters(globals(), _names_before_parameters, "setup")

# %% tags=["remove-cell"]
import html

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Markdown, display

from kdlib.book import figures
from kdlib.book import formatting as show
from kdlib.book.formatting import details, relabel, tests_table
from kdlib.book.setup_chapter import ChapterSetup, SetupView, chapter_seconds

figures.book_style()  # the book's legible figure sizes (kdlib.book.figures.STYLE)
pd.set_option("display.max_columns", 40, "display.width", 200)
chapter = ChapterSetup.from_parameters(globals())
trained_now = 0
if train_missing:  # a rerun with new parameters fills its own gaps; the driver's chapters never train
    from kdlib.executors import fill_missing

    trained_now = fill_missing(chapter.entry_id, chapter.cfg, chapter.results, device)
view = SetupView.read(chapter, trained_now)
main = view.main

# %% tags=["remove-input"]
display(Markdown(view.description()))
_rerun, _papermill = view.rerun_commands()
_seconds = chapter_seconds(study_file, book_scale, view.cfg.scale, view.entry_id, results_dir)
display(HTML(
    "<p>" + show.csv_link(view.runs_csv(), f"{view.entry_id}-runs.csv", "Every run of this entry as CSV")
    + " (one row per run: arm, seed, KD weight, RCD noise, hash, every metric).</p>"
    + details("Rerun this chapter" + (f" (executing it took {_seconds:.0f} s)" if _seconds else ""),
              "<p>With its parameters checked first (runs in the store are reused, missing ones trained):</p><pre>"
              + html.escape(_rerun) + "</pre><p>The same with papermill:</p><pre>" + html.escape(_papermill) + "</pre>",
              raw_html=True)))

# %% [markdown]
# ## Training
# Runs come from the run store (the driver trains them before any chapter runs). The curves show the
# training loss per epoch, averaged over seeds, for each arm; the table says for how many runs the loss
# flattened by the last epoch (less than 5 % of its total fall in the last 20 % of the epochs) and how
# well each arm fits its training set.

# %% tags=["remove-input"]
display(Markdown(view.status()))
fig = figures.loss_curves(main, view.epoch_logs())
display(relabel(view.convergence()))

# %% [markdown]
# ## Every metric by arm
# Mean (standard error of the mean) over seeds under the main KD weight, one column per arm. Accuracies and
# agreements are percentages; students are measured against the teacher of the same seed; MI and CKA
# compare the student's predicted labels and penultimate features with the teacher's.

# %% tags=["remove-input"]
display(relabel(view.arm_table(), columns=False))

# %% tags=["remove-input"]
_rows = view.feature_rows()
display(Markdown(
    "Both similarity measures are biased upwards on a finite test set, so each is read against a baseline "
    f"measured here. For CKA (linear, on the {_rows} stored test rows of penultimate features) the debiased "
    "estimate (the unbiased HSIC estimator, Song et al. 2012; Nguyen et al. 2021) stands beside the stored one, "
    "and the last two rows give the baselines from the stored features: two teachers of different seeds (what two "
    "independently trained models of this setup share) and the controls' features with their rows permuted (no "
    "correspondence at all: the estimator's floor). The plug-in MI of two unrelated models is about (K - 1)^2 / 2N "
    "nats for K classes on N test examples, shown beside the MI. The exploratory tests below compare the stored "
    "values between arms of the same architecture, where much of a common bias cancels:"))

# %% tags=["remove-input"]
display(relabel(view.similarity_table(), columns=False))

# %% [markdown]
# ## Hypothesis tests
# Exact one-sided Wilcoxon signed-rank tests paired by seed (exact with ties; zero differences are
# dropped), in the direction "more teacher-like" or "better"; the effect size is the rank-biserial
# correlation r. The **primary family** (declared in the study file) carries the claims and is
# Benjamini-Yekutieli-corrected on its own; every other test is **exploratory**, corrected on its own.

# %% tags=["remove-input"]
display(Markdown(view.power_note()))
negative_transfer = view.negative_transfer_note()
if negative_transfer:
    display(Markdown(negative_transfer))
display(Markdown("**Primary tests**"))
display(tests_table(view.compact_tests("primary")))
display(Markdown("**Exploratory tests**"))
display(tests_table(view.compact_tests("exploratory")))

# %% [markdown]
# The full table (every column: seeds used, zero differences dropped, seeds excluded, both means, W, raw
# p, the smallest p these data allow) is one click away:

# %% tags=["remove-input"]
display(HTML(details("full table of tests", show.full_tests_html(view.full_tests())
                     + "<p><small>a, b: the two arms of the comparison, as fractions (accuracy, agreement) or in the "
                     "metric's unit; n: seed pairs, of which ≠ 0 differ and excl. were left out; W: the signed-rank "
                     "statistic; r: rank-biserial correlation; smallest p: the least p the pairs kept allow, and "
                     "whether it passes the correction.</small></p>", raw_html=True)))

# %% [markdown]
# ## Both readings of the paper's alpha
# The paper's "alpha = 0.9" is either a KD weight of 0.9 or of 0.1 (see the methods). Teachers and
# controls are shared; kd and rcd ran under each reading:

# %% tags=["remove-input"]
display(show.readings_table(view.readings_table()))

# %% [markdown]
# ## Per seed
# Agreement, JS divergence and accuracy of every run; grey lines join the arms of one seed.

# %% tags=["remove-input"]
fig = figures.per_seed_figure(main)

# %% [markdown]
# Every seed of every arm, one metric at a time (pick it in the menu above the chart):

# %% tags=["remove-input"]
figures.show_plotly(figures.metric_explorer(main, ["agreement", "js_divergence", "activation_distance", "kl_teacher_student",
                                               "accuracy", "pos_agreement", "neg_agreement", "mi", "cka",
                                               "generalisation_gap"]))

# %% [markdown]
# Per-seed numbers by arm (a tab per arm):

# %% tags=["remove-input"]
figures.per_seed_tabs(main, ["accuracy", "agreement", "js_divergence", "pos_agreement", "neg_agreement", "cka",
                           "generalisation_gap"])

# %% [markdown]
# ## Positive and negative knowledge transfer
# A+ is the student's agreement with the teacher where the teacher is right, A- where it is wrong (the
# student repeats the teacher's wrong label). Changes are against the control. A- starts lower than A+,
# so a rise relative to the control favours A- by construction; the asymmetry is judged on the **share
# of the control's remaining headroom** that kd closes, (A_kd - A_control) / (1 - A_control), per seed.
# A seed's share is left undefined where the control disagrees with its teacher on fewer examples of that
# subset than the study file's `min_disagreements` (a share from one or two examples moves in steps of 50 %
# or more); the mean shares are over the seeds where both are defined, the pairs the asymmetry test uses.

# %% tags=["remove-input"]
display(show.transfer_table(view.transfer_table()))
display(Markdown(show.undefined_note(view.transfer_table())))
fig = figures.transfer_figure(main)
fig = figures.headroom_figure(main, view.cfg.min_disagreements)

# %% [markdown]
# ## Generalisation gap

# %% tags=["remove-input"]
fig = figures.gap_figure(main)

# %% tags=["remove-input"]
if len(view.cfg.noise_variants) > 1:
    display(Markdown(
        "## RCD noise variants side by side\nThe paper's noise distribution is not known. Each variant is the same "
        "kd loss, init and data order with different noise for the teacher's logits: `unit_fixed` (the default) "
        "N(0,1) per example fixed for the run; `unit_resampled` fresh each step; `teacher_scaled` fixed with the "
        "teacher's logit std; `permuted` the teacher's logits under a random class permutation. **`permuted` is "
        "not free of the input**: it keeps how confident the teacher was on each example (the sorted "
        "probabilities), which is information about the input; only which class the teacher pointed to is removed."))
    display(show.variants_table(view.rcd_variants_table()))
    fig = figures.rcd_variants_figure(view.main_weight_runs)
    plt.show()  # here, under its heading, not at the end of the cell
if len(view.cfg.kd_weights) >= 3:
    display(Markdown("## kd and rcd against the KD weight\nWhere the rcd curves meet kd's, the teacher adds "
                     "nothing beyond a soft target; where they fall away, the noise dominates the loss."))
    fig = figures.weight_curve_figure(view.results)

# %% tags=["remove-input"]
if view.cfg.backdoor:
    b = view.cfg.backdoor
    display(Markdown("## Backdoor transfer\nOnly the teacher trained on poisoned data; the students saw clean "
                     "inputs (kd and rcd distil the teacher's outputs on clean inputs). Attack success is the share of "
                     f"triggered test inputs of other classes classified as class {b['target']}. A student that is "
                     "merely biased towards the target class also scores, so the lift (attack success minus the rate "
                     "at which the same inputs *without* the trigger go to the target) is tested too."))
    fig = figures.per_seed_figure(main, metrics=("backdoor_asr", "backdoor_lift", "accuracy"))

# %% tags=["remove-input"]
_replication, _why_not = view.replication()
if _replication:
    display(Markdown("## Retrained and compared\n" + view.replication_text(_replication)))
    for _w, _table in view.replication_tables(_replication).items():
        display(Markdown(f"**KD weight w = {_w}**" + (" (the main reading)" if float(_w) == view.cfg.kd_weight else "")))
        display(_table.style.hide(axis="index"))
elif _why_not:
    display(Markdown(_why_not))
