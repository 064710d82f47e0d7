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

# %% tags=["remove-cell"]
_names_before_parameters = set(globals())

# %% tags=["parameters"]
scale = "cpu"
results_dir = None   # default: the scale's run store, e.g. results/cpu
study_file = None

# %% tags=["remove-cell"]
from kdlib.chapters import check_parameters  # a misspelled parameter stops the chapter here

check_parameters(globals(), _names_before_parameters, "explorer")

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from kdlib import load_study
from kdlib import metrics, plots
from kdlib.analysis import plan_setups
from kdlib.data import DATASETS
from kdlib.stats import DIRECTIONS, paired_tests
from kdlib.display import label
from kdlib.store import RunStore

study = load_study(study_file)
store = RunStore.open(results_dir or study.results_dir(scale))
setups = dict(plan_setups(study, scale))


def arm_name(r, cfg) -> str:
    if r.arm == "kd":
        return "kd" if r.kd_weight == cfg.kd_weight else f"kd w={r.kd_weight:g}"
    if r.arm == "rcd":
        tag = "" if r.rcd_noise == cfg.rcd_noise else f":{r.rcd_noise}"
        return f"rcd{tag}" if r.kd_weight == cfg.kd_weight else f"rcd{tag} w={r.kd_weight:g}"
    return r.arm


def load_logits(entry: str) -> tuple[pd.DataFrame, np.ndarray, int, list]:
    """Per-run test logits and features of one plan entry, and the labels (stored with each teacher), from
    the store: no dataset is needed."""
    cfg = setups[entry]
    rows, labels = [], None
    for r in cfg.runs():
        if not store.has(r):
            continue
        out = store.outputs(r)
        if r.arm == "teacher" and labels is None:
            labels = out["test_labels"].astype(int)
        rows.append({"arm": arm_name(r, cfg), "seed": r.seed, "logits": out["test_logits"].astype(np.float32),
                     "features": out.get("features")})
    n_classes = DATASETS.meta(cfg.dataset)["n_classes"]
    return pd.DataFrame(rows), labels, n_classes, list(range(n_classes))


# %%
entry_w = widgets.Dropdown(options=list(setups), description="setup")
arms_w = widgets.SelectMultiple(options=["control", "kd", "rcd"], value=("control", "kd", "rcd"), description="arms")
metric_w = widgets.Dropdown(options=["agreement", "js_divergence", "activation_distance", "kl_teacher_student",
                                     "accuracy", "pos_agreement", "neg_agreement", "mi", "nmi", "cka", "ece"],
                            description="metric")
view_w = widgets.ToggleButtons(options=["per seed", "per class"], description="view")
out = widgets.Output()


def refresh(*_):
    out.clear_output(wait=True)
    with out:
        runs, y, n_classes, names = load_logits(entry_w.value)
        if runs.empty:
            print(f"no runs of {entry_w.value} in {store.root}: run the study first")
            return
        teacher = {r.seed: r for r in runs[runs.arm == "teacher"].itertuples()}
        arms = [a for a in runs.arm.unique() if a != "teacher" and a.split(":")[0].split(" ")[0] in arms_w.value]
        if not arms:
            print("No arm selected: pick at least one of control, kd, rcd.")
            return
        if view_w.value == "per seed":
            rows = [{"arm": r.arm, "seed": r.seed,
                     **metrics.functional_metrics(r.logits, teacher[r.seed].logits, y, student_features=r.features,
                                                  teacher_features=teacher[r.seed].features)}
                    for r in runs[runs.arm.isin(arms)].itertuples()]
            df = pd.DataFrame(rows)
            fig, ax = plt.subplots(figsize=(7, 3.5))
            for arm in arms:
                d = df[df.arm == arm]
                ax.scatter([arm] * len(d), d[metric_w.value], color=plots.ARM_COLOURS.get(arm.split(":")[0].split(" ")[0], "0.5"))
            ax.set_ylabel(label(metric_w.value).replace(" (%)", " (fraction)"))
            ax.set_xlabel("arm")
            plt.show()
            main = df[df.arm.isin(["control", "kd", "rcd"])]
            if metric_w.value in DIRECTIONS and main.arm.nunique() > 1:
                display(paired_tests(main, metrics=(metric_w.value,)))
        else:
            fig, ax = plt.subplots(figsize=(9, 3.5))
            width = 0.8 / max(1, len(arms))
            key = "accuracy" if metric_w.value == "accuracy" else "agreement"
            for j, arm in enumerate(arms):
                per = np.mean([metrics.per_class(r.logits, teacher[r.seed].logits, y, n_classes)[key]
                               for r in runs[runs.arm == arm].itertuples()], axis=0)
                ax.bar(np.arange(n_classes) + j * width, per, width, label=arm,
                       color=plots.ARM_COLOURS.get(arm.split(":")[0].split(" ")[0], "0.5"))
            shown = np.arange(0, n_classes, max(1, n_classes // 20))
            ax.set_xticks(shown + 0.4 - width / 2, [names[i] for i in shown], rotation=30)
            ax.set_ylabel(f"{key} per true class")
            ax.set_xlabel("class")
            ax.legend()
            plt.show()


for w in (entry_w, arms_w, metric_w, view_w):
    w.observe(refresh, names="value")
display(widgets.VBox([widgets.HBox([entry_w, metric_w]), widgets.HBox([arms_w, view_w]), out]))
refresh()
