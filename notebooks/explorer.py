# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Explorer (open in JupyterLab)
# Live views of a finished study, recomputed from the stored test logits of every run: pick a setup, the
# arms, a metric and a view. Nothing is retrained. Open with `jupyter lab notebooks/explorer.py`
# (jupytext opens the .py file as a notebook) after running the study.

# %% tags=["parameters"]
scale = "cpu"
results = "results/cpu"
study_file = None

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from kdlib import load_study
from kdlib import metrics, plots
from kdlib.paths import from_root
from kdlib.analysis import plan_setups
from kdlib.data import load_dataset
from kdlib.stats import DIRECTIONS, paired_tests
from kdlib.store import RunStore

study = load_study(study_file)
store = RunStore(from_root(results) / "runs")
setups = dict(plan_setups(study, scale))


def load_logits(entry: str) -> tuple[pd.DataFrame, np.ndarray, object]:
    """Per-run test logits of one plan entry, and the labels, from the store."""
    cfg = setups[entry]
    data = load_dataset(cfg.dataset, **cfg.data_args)
    rows = [{"arm": r.arm if r.arm != "rcd" or r.rcd_noise == cfg.rcd_noise else f"rcd:{r.rcd_noise}",
             "seed": r.seed, "logits": store.test_logits(r)} for r in cfg.runs() if store.has(r)]
    return pd.DataFrame(rows), data.y_test.numpy(), data


# %%
entry_w = widgets.Dropdown(options=list(setups), description="setup")
arms_w = widgets.SelectMultiple(options=["control", "kd", "rcd"], value=("control", "kd", "rcd"), description="arms")
metric_w = widgets.Dropdown(options=["agreement", "js_divergence", "activation_distance", "kl_teacher_student",
                                     "accuracy", "pos_agreement", "neg_agreement", "ece"], description="metric")
view_w = widgets.ToggleButtons(options=["per seed", "per class"], description="view")
out = widgets.Output()


def refresh(*_):
    out.clear_output(wait=True)
    with out:
        runs, y, data = load_logits(entry_w.value)
        if runs.empty:
            print(f"no runs of {entry_w.value} in {store.root}: run the study first")
            return
        teacher = {r.seed: r.logits for r in runs[runs.arm == "teacher"].itertuples()}
        arms = [a for a in runs.arm.unique() if a != "teacher" and (a in arms_w.value or a.startswith("rcd:"))]
        if view_w.value == "per seed":
            rows = [{"arm": r.arm, "seed": r.seed, **metrics.functional_metrics(r.logits, teacher[r.seed], y)}
                    for r in runs[runs.arm.isin(arms)].itertuples()]
            df = pd.DataFrame(rows)
            fig, ax = plt.subplots(figsize=(7, 3.5))
            for arm in arms:
                d = df[df.arm == arm]
                ax.scatter([arm] * len(d), d[metric_w.value], color=plots.ARM_COLOURS.get(arm.split(":")[0], "0.5"))
            ax.set_ylabel(plots.LABELS.get(metric_w.value, metric_w.value).replace(" (%)", " (fraction)"))
            ax.set_xlabel("arm")
            plt.show()
            main = df[df.arm.isin(["control", "kd", "rcd"])]
            if metric_w.value in DIRECTIONS and main.arm.nunique() > 1:
                display(paired_tests(main, metrics=(metric_w.value,)))
        else:
            fig, ax = plt.subplots(figsize=(9, 3.5))
            width = 0.8 / max(1, len(arms))
            names = data.class_names or list(range(data.n_classes))
            key = "accuracy" if metric_w.value == "accuracy" else "agreement"
            for j, arm in enumerate(arms):
                per = np.mean([metrics.per_class(r.logits, teacher[r.seed], y, data.n_classes)[key]
                               for r in runs[runs.arm == arm].itertuples()], axis=0)
                ax.bar(np.arange(data.n_classes) + j * width, per, width, label=arm,
                       color=plots.ARM_COLOURS.get(arm.split(":")[0], "0.5"))
            ax.set_xticks(np.arange(data.n_classes) + 0.4 - width / 2, names, rotation=30)
            ax.set_ylabel(f"{key} per true class")
            ax.set_xlabel("class")
            ax.legend()
            plt.show()


for w in (entry_w, arms_w, metric_w, view_w):
    w.observe(refresh, names="value")
display(widgets.VBox([widgets.HBox([entry_w, metric_w]), widgets.HBox([arms_w, view_w]), out]))
refresh()
