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
# Parameters (papermill -p NAME VALUE). None means "the study file's value for this setup and scale".
entry_id = None          # the plan entry (defaults to the setup name)
setup = "digits-mlp-self"
scale = "cpu"
n_seeds = None
alpha = None
temperature = None
epochs = None
rcd_noise = None
rcd_variants = None      # e.g. ["unit_resampled", "permuted"] to run RCD noises side by side
variant = None           # logit, fitnets or attention
variant_args = None      # e.g. {"student_layer": "features.3", "teacher_layer": "features.3", "beta": 1.0}
student_args = None      # standard distillation: change the student's size, e.g. {"hidden": [8]}
backdoor = None          # a backdoored teacher, e.g. {"target": 0, "poison_fraction": 0.1, "patch": 3}
device = "auto"
results = "results/cpu"  # the run store of this study
study_file = None

# %% tags=["remove-cell"]
import matplotlib
import pandas as pd
from IPython.display import Markdown, display

from kdlib import load_study
from kdlib.paths import from_root
from kdlib import plots
from kdlib.analysis import arm_table, test_table, transfer_table
from kdlib.runner import main_arms, run_setup
from kdlib.stats import metrics_for, paired_tests, power_limits
from kdlib.store import RunStore

matplotlib.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False})
pd.set_option("display.max_columns", 40, "display.width", 200)
study = load_study(study_file)
overrides = {k: v for k, v in dict(n_seeds=n_seeds, alpha=alpha, temperature=temperature, epochs=epochs,
                                    rcd_noise=rcd_noise, rcd_variants=rcd_variants, variant=variant,
                                    variant_args=variant_args, student_args=student_args,
                                    backdoor=backdoor).items() if v is not None}
cfg = study.setup(setup, scale, **overrides)
entry_id = entry_id or cfg.name
store = RunStore(from_root(results) / "runs")

# %% tags=["remove-input"]
prov_rows = "\n".join(f"| {k} | {v} |" for k, v in cfg.provenance.items())
student = f"`{cfg.student.name}` {cfg.student.args or ''}" if cfg.kind == "standard" else "the teacher's architecture, from the teacher's initial weights"
display(Markdown(f"""
{cfg.description}

| what | value |
|---|---|
| setup | `{cfg.name}` ({'self-distillation' if cfg.kind == 'self' else 'standard distillation'}) |
| modality / dataset | {cfg.modality} / `{cfg.dataset}` {cfg.data_args or ''} |
| teacher | `{cfg.teacher.name}` {cfg.teacher.args or ''} |
| student | {student} |
| distillation | `{cfg.variant}` {cfg.variant_args or ''}, alpha = {cfg.alpha}, T = {cfg.temperature} |
| RCD noise | `{cfg.rcd_noise}`{(' (side by side: ' + ', '.join(cfg.rcd_variants) + ')') if cfg.rcd_variants else ''} |
| training | {', '.join(f'{k} {v}' for k, v in cfg.train.items())} |
| seeds | {cfg.n_seeds} (scale `{cfg.scale}`) |
{f"| backdoor | target class {cfg.backdoor['target']}, {cfg.backdoor['poison_fraction']:.0%} of the teacher's other-class training examples poisoned with a {cfg.backdoor['patch']}x{cfg.backdoor['patch']} corner patch; students train on clean data |" if cfg.backdoor else ""}

**Which choices are the paper's.** The paper's body (hyperparameters, tables) is not available to this
project; everything marked *reconstructed* is our own protocol. Every value above is a parameter
(see the README for rerunning this page with papermill).

| choice | provenance |
|---|---|
{prov_rows}
| alpha, T, RCD noise, seeds | reconstructed (alpha = 0.9 is named by public summaries) |
"""))

# %% [markdown]
# ## Training
# Runs that are already in the store are loaded, not retrained. Each line is one run (plain-text progress).

# %% tags=["hide-output"]
results_df = run_setup(cfg, store, device=device, progress=print)
main = main_arms(results_df)
print(f"{len(results_df)} runs, {results_df['seconds'].sum():.1f} s of training in total on {results_df['device'].iloc[0]}")

# %% [markdown]
# ## Every metric by arm
# Mean (standard error of the mean) over seeds, one column per arm. Accuracies and agreements are percentages; the
# generalisation gap is train minus test accuracy in points; JS divergence and KL in nats.
# Students are measured against the teacher of the same seed.

# %% tags=["remove-input"]
display(arm_table(main).T.rename_axis("metric"))

# %% [markdown]
# ## Hypothesis tests
# One-sided Wilcoxon signed-rank tests paired by seed, in the direction "more teacher-like" (higher
# agreement, lower JS / activation distance / KL) or "better" (accuracy, loss); effect size is the
# rank-biserial correlation; p-values are corrected with Benjamini-Yekutieli across the whole family
# of this setup.

# %% tags=["remove-input"]
tests = paired_tests(main, metrics_for(main))
lim = power_limits(cfg.n_seeds, len(tests))
display(Markdown(
    f"With **{lim['n_seeds']} seeds** the smallest one-sided p is 2^-{lim['n_seeds']} = {lim['min_p']:.2g}. "
    f"After BY correction over {lim['n_tests']} tests it becomes {lim['min_p_by_best_case']:.2g} if every test "
    f"reaches it, and {lim['min_p_by_lone_test']:.2g} for a test that reaches it alone. "
    + ("**At this seed count no test can reach significance.**" if not lim["can_survive_correction"] else
       ("A lone significant test cannot survive the correction at this seed count; consistent effects across metrics can."
        if not lim["lone_test_can_survive"] else "Single tests can survive the correction."))))
display(test_table(tests).style.format({"p": "{:.2g}", "p (BY)": "{:.2g}", "smallest p": "{:.2g}",
                                        "effect (rank-biserial r)": "{:+.2f}", "W": "{:.0f}"}).hide(axis="index"))

# %% [markdown]
# ## Per seed
# Agreement, JS divergence and accuracy of every run; grey lines join the arms of one seed.

# %% tags=["remove-input"]
fig = plots.per_seed_figure(main)

# %% [markdown]
# Pick a metric in the menu above the chart to see every seed of every arm:

# %% tags=["remove-input"]
plots.show_plotly(plots.metric_explorer(main, ["agreement", "js_divergence", "activation_distance", "kl_teacher_student",
                                               "accuracy", "pos_agreement", "neg_agreement", "generalisation_gap"],
                                        f"{cfg.title}: per-seed values"))

# %% [markdown]
# Per-seed numbers by arm (a tab per arm):

# %% tags=["remove-input"]
plots.per_seed_tabs(main, ["accuracy", "agreement", "js_divergence", "pos_agreement", "neg_agreement", "generalisation_gap"])

# %% [markdown]
# ## Positive and negative knowledge transfer
# A+ is the student's agreement with the teacher where the teacher is right, A- where it is wrong (the
# student repeats the teacher's wrong label). Changes are against the control; the headroom
# 1 - A(control) shows how much room the control leaves (a ceiling effect limits ΔA+).

# %% tags=["remove-input"]
display(transfer_table(main).T.rename_axis("measure").style.format("{:.2f}"))
fig = plots.transfer_figure(main)

# %% [markdown]
# ## Generalisation gap

# %% tags=["remove-input"]
fig = plots.gap_figure(main)

# %% tags=["remove-input"]
if len(cfg.noise_variants) > 1:
    display(Markdown("## RCD noise variants side by side\nThe paper's noise distribution is not known. Each "
                     "variant is the same kd loss, init and data order with different noise for the teacher's "
                     "logits: `unit_fixed` (the default) N(0,1) per example fixed for the run; `unit_resampled` "
                     "fresh each step; `teacher_scaled` fixed with the teacher's logit std; `permuted` the "
                     "teacher's logits under a random class permutation."))
    students = results_df[results_df.arm != "teacher"].assign(rcd_noise=lambda d: d.rcd_noise.fillna("-"))
    variants = students.groupby(["arm", "rcd_noise"])[["accuracy", "agreement", "pos_agreement", "neg_agreement"]].mean()
    variants = (100 * variants).rename(columns={"accuracy": "accuracy (%)", "agreement": "agreement (%)",
                                                "pos_agreement": "A+ (%)", "neg_agreement": "A- (%)"})
    variants["gap (points)"] = students.groupby(["arm", "rcd_noise"])["generalisation_gap"].mean()
    display(variants.style.format("{:.2f}"))
    fig = plots.rcd_variants_figure(results_df)

# %% tags=["remove-input"]
if cfg.backdoor:
    display(Markdown("## Backdoor transfer\nOnly the teacher trained on poisoned data; the students saw clean "
                     "inputs (kd and rcd distil the teacher's outputs on clean inputs). Attack success is the share of "
                     f"triggered test images of other classes classified as class {cfg.backdoor['target']}. The "
                     "`backdoor_asr` rows of the test table above test whether kd inherits more of it than the control. "
                     "A student that is merely biased towards the target class also scores, so the lift (attack success "
                     "minus the rate at which the same images *without* the trigger go to the target) is tested too."))
    fig = plots.per_seed_figure(main, metrics=("backdoor_asr", "backdoor_lift", "accuracy"))
