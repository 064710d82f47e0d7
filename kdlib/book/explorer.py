"""The JupyterLab explorer: live ipywidgets over a finished study's run store (nothing is retrained).

`Explorer()` shows a scale, a plan entry, the arms, a metric and a view (per seed or per class). Per-seed
values and the tests are the book's own (the stored per-run metrics, `analysis.setup_tests`, the book's
units, labels and test table); the per-class view is recomputed from the stored test logits and labels.
The figure and table builders are plain functions so that they are tested without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from .. import metrics
from .setup_analysis import PERCENT_METRICS, compact_tests, plan_setups, primary_family, setup_tests
from .formatting import label, tests_table
from .figures import ARM_COLOURS, RCD_COLOURS, STYLE
from ..stats import DIRECTIONS, measured
from ..results import ResultsFolder
from ..store import RunStore
from .frames import main_arms, run_table

METRICS = ("agreement", "accuracy", "js_divergence", "activation_distance", "kl_teacher_student", "pos_agreement",
           "neg_agreement", "mi", "nmi", "cka", "ece", "loss", "generalisation_gap", "backdoor_asr", "backdoor_lift")
PER_CLASS = ("accuracy", "agreement")  # what metrics.per_class gives


@dataclass(frozen=True)
class ArmGroup:
    """One arm as the explorer shows it: the arm, its KD weight and RCD noise, a label and a colour."""
    arm: str
    kd_weight: Optional[float]
    rcd_noise: Optional[str]
    label: str
    colour: tuple
    main: bool          # control, kd and rcd of the main reading (and the teacher)
    block: str          # the block it is drawn in: "main arms", "w = 0.9: RCD noises", "w = 0.1", ...


def _shade(colour: str, amount: float) -> tuple:
    """`colour` mixed with white by `amount` (0: unchanged), so a KD weight reads as a lighter shade."""
    r, g, b = to_rgb(colour)
    return tuple(c + (1.0 - c) * amount for c in (r, g, b))


def arm_groups(results: pd.DataFrame, cfg, with_teacher: bool = False) -> list[ArmGroup]:
    """The arms of one entry in reading order: the main arms (control, kd, rcd at the main KD weight and
    noise), then the other RCD noises at the main weight, then each other KD weight (kd, then its RCD
    noises). A hue per arm and noise, lighter for each further KD weight; one label each."""
    present = {(a, w if a in ("kd", "rcd") else None, n if a == "rcd" else None)
               for a, w, n in zip(results["arm"], results["kd_weight"], results["rcd_noise"])}
    noises, weights = list(cfg.noise_variants), list(cfg.kd_weights)
    out = []
    for arm in ("teacher", "control"):
        if (arm, None, None) in present and (with_teacher or arm != "teacher"):
            out.append(ArmGroup(arm, None, None, arm, to_rgb(ARM_COLOURS[arm]), True, "main arms"))
    for i, w in enumerate(weights):
        shade = 0.55 * i / max(1, len(weights) - 1) if len(weights) > 1 else 0.0
        for arm, noise in [("kd", None)] + [("rcd", n) for n in noises]:
            if (arm, w, noise) not in present:
                continue
            main = i == 0 and (arm == "kd" or noise == cfg.rcd_noise)
            name = arm + ("" if arm == "kd" or noise == cfg.rcd_noise else f" {noise}") + ("" if i == 0 else f", w={w:g}")
            base = ARM_COLOURS["kd"] if arm == "kd" else (ARM_COLOURS["rcd"] if noise == cfg.rcd_noise
                                                            else RCD_COLOURS.get(noise, "#7f7f7f"))
            block = "main arms" if main else (f"w = {w:g}: other RCD noises" if i == 0 else f"w = {w:g}")
            out.append(ArmGroup(arm, w, noise, name, _shade(base, shade), main, block))
    return out


def _select(results: pd.DataFrame, g: ArmGroup) -> pd.DataFrame:
    keep = results["arm"] == g.arm
    if g.kd_weight is not None:
        keep &= results["kd_weight"] == g.kd_weight
    if g.rcd_noise is not None:
        keep &= results["rcd_noise"] == g.rcd_noise
    return results[keep]


def values(d: pd.DataFrame, metric: str) -> pd.Series:
    """A metric in the book's units: percentages for accuracies and agreements."""
    return d[metric] * (100.0 if metric in PERCENT_METRICS else 1.0)


def per_seed_figure(results: pd.DataFrame, groups: list[ArmGroup], metric: str):
    """Every seed of every arm, one row per arm (labels never overlap, however many arms), the mean ±
    SEM in black, blocks of arms separated and named, a legend of the colours."""
    n = len(groups)
    fig, ax = plt.subplots(figsize=(7.2, 0.42 * n + 1.4))
    rng = np.random.default_rng(0)  # fixed jitter: a redraw looks the same
    for i, g in enumerate(groups):
        v = values(_select(results, g), metric).dropna()
        ax.scatter(v, i + rng.uniform(-0.15, 0.15, len(v)), color=g.colour, edgecolors="0.3", linewidths=0.4,
                   s=28, label=g.label, zorder=2)
        if len(v):
            sem = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
            ax.errorbar(v.mean(), i, xerr=sem, fmt="|", color="black", ms=14, capsize=3, zorder=3)
    for i in range(1, n):
        if groups[i].block != groups[i - 1].block:
            ax.axhline(i - 0.5, color="0.8", lw=0.8)
    ax.set_yticks(range(n), [g.label for g in groups])
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(label(metric))
    ax.set_title(f"{label(metric)} per seed (black: mean ± SEM)")
    if n:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="arm")
    fig.tight_layout()
    return fig


def per_class_values(store: RunStore, results: pd.DataFrame, groups: list[ArmGroup], metric: str) -> tuple:
    """Mean per-class accuracy or agreement (%) of each arm over seeds, from the stored test logits; the
    test labels are stored with every teacher, so no dataset is needed."""
    key = metric if metric in PER_CLASS else "agreement"
    teachers = results[results["arm"] == "teacher"]
    teacher = {s: store.outputs(h) for s, h in zip(teachers["seed"], teachers["hash"])}
    if not teacher:
        return key, pd.DataFrame()
    labels = next(iter(teacher.values()))["test_labels"].astype(int)
    n_classes = int(max(labels.max() + 1, next(iter(teacher.values()))["test_logits"].shape[1]))
    cols = {}
    for g in groups:
        d = _select(results, g)
        per = [metrics.per_class(store.outputs(h)["test_logits"].astype(np.float32),
                                 teacher[s]["test_logits"].astype(np.float32), labels, n_classes)[key]
               for s, h in zip(d["seed"], d["hash"]) if s in teacher]
        if per:
            cols[g.label] = 100 * np.nanmean(per, axis=0)
    return key, pd.DataFrame(cols, index=pd.RangeIndex(n_classes, name="class"))


def per_class_figure(table: pd.DataFrame, groups: list[ArmGroup], key: str):
    """Grouped bars per true class; the legend sits beside the axes, never over the bars."""
    shown = [g for g in groups if g.label in table.columns]
    n_classes = len(table)
    fig, ax = plt.subplots(figsize=(8.2, 3.8))
    width = 0.8 / max(1, len(shown))
    for j, g in enumerate(shown):
        ax.bar(np.arange(n_classes) + j * width, table[g.label], width, label=g.label, color=g.colour)
    ticks = np.arange(0, n_classes, max(1, n_classes // 20))
    ax.set_xticks(ticks + 0.4 - width / 2, [str(t) for t in ticks])
    ax.set_xlabel("true class")
    ax.set_ylabel(f"{'accuracy' if key == 'accuracy' else 'agreement with teacher'} (%)")
    ax.set_title(f"{key} per true class, mean over seeds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="arm")
    fig.tight_layout()
    return fig


def entry_tests(results: pd.DataFrame, cfg) -> pd.DataFrame:
    """Every test of the entry's main arms, as the book computes them (compact columns, with families)."""
    return compact_tests(setup_tests(main_arms(results), primary_family(cfg)))


def tests_tables(tests: pd.DataFrame, metric: str) -> dict:
    """The book's test tables for one entry: the whole primary family, and the exploratory tests of
    `metric`, their p-values corrected over the same families as in the book (`tests`: `entry_tests`)."""
    if tests.empty:
        return {}
    out = {"Primary tests": tests[tests["family"] == "primary"].drop(columns="family")}
    expl = tests[(tests["family"] == "exploratory") & (tests["metric"] == metric)].drop(columns="family")
    out[f"Exploratory tests of {label(metric)}"] = expl
    return out


def scales_with_runs(study) -> list[str]:
    """The study's scales whose run store exists and holds at least one run."""
    out = []
    for s in study.scales:
        store = ResultsFolder.of(study, s).existing_store()
        if store is not None and store.hashes():
            out.append(s)
    return out


class Explorer:
    """The explorer's widgets and their callbacks. Display it (the last line of a cell) in JupyterLab."""

    def __init__(self, scale: Optional[str] = None, results_dir: Optional[str] = None, study_file: Optional[str] = None):
        import ipywidgets as widgets

        from ..studyfile import load_study

        self.study = load_study(study_file)
        self.results_dir = results_dir  # for `scale` only: another folder than the scale's own
        scales = scales_with_runs(self.study)
        if scale is not None and scale not in scales:
            scales.insert(0, scale)  # asked for (its runs may be in results_dir)
        self.home_scale = scale or ("cpu" if "cpu" in scales else (scales[0] if scales else "cpu"))
        self._cache: dict = {}
        self._quiet = False
        self.scale_w = widgets.Dropdown(options=scales or [self.home_scale], value=self.home_scale, description="scale")
        self.entry_w = widgets.Dropdown(description="entry", layout=widgets.Layout(width="420px"))
        self.metric_w = widgets.Dropdown(options=[(label(m), m) for m in METRICS], value="agreement",
                                         description="metric", layout=widgets.Layout(width="420px"))
        self.arms_w = widgets.SelectMultiple(description="arms", rows=8, layout=widgets.Layout(width="320px"))
        self.view_w = widgets.ToggleButtons(options=["per seed", "per class"], description="view")
        self.out = widgets.Output()
        self._set_entries()
        self.scale_w.observe(self._on_scale, names="value")
        self.entry_w.observe(self._on_entry, names="value")
        for w in (self.arms_w, self.metric_w, self.view_w):
            w.observe(self.refresh, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.scale_w, self.entry_w]), widgets.HBox([self.metric_w, self.view_w]),
                                    self.arms_w, self.out])
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ state
    def store(self) -> RunStore:
        s = self.scale_w.value
        return ResultsFolder.of(self.study, s, self.results_dir if s == self.home_scale else None).store()

    def _entry(self):
        """(cfg, results, groups) of the chosen entry, read once per scale and entry."""
        key = (self.scale_w.value, self.entry_w.value)
        if key not in self._cache:
            cfg = dict(plan_setups(self.study, self.scale_w.value))[self.entry_w.value]
            results = run_table(self.store(), cfg)
            self._cache[key] = (cfg, results, arm_groups(results, cfg) if len(results) else [])
        return self._cache[key]

    def _tests(self) -> pd.DataFrame:
        key = ("tests", self.scale_w.value, self.entry_w.value)
        if key not in self._cache:
            cfg, results, _ = self._entry()
            self._cache[key] = entry_tests(results, cfg)
        return self._cache[key]

    def first_entry_with_runs(self) -> Optional[str]:
        """The scale's first plan entry whose store holds any of its runs (the paper scale ran one entry of
        many on the CPU), else its first entry."""
        plan = self.study.plan(self.scale_w.value)
        try:
            stored = set(self.store().hashes())
        except Exception:  # no store for this scale yet
            stored = set()
        for entry_id, cfg in plan_setups(self.study, self.scale_w.value):
            if any(r.hash in stored for r in cfg.runs()):
                return entry_id
        return plan[0].id if plan else None

    def _set_entries(self):
        plan = self.study.plan(self.scale_w.value)
        self._quiet = True  # one redraw for the whole change, not one per widget
        try:
            # options and value in one message: sent apart, the browser's dropdown selects an index of the old
            # options ("Cannot set properties of undefined (setting 'selected')")
            with self.entry_w.hold_sync():
                self.entry_w.options = [(e.title or e.id, e.id) for e in plan]
                self.entry_w.value = self.first_entry_with_runs()
            self._set_arms()
        finally:
            self._quiet = False

    def _set_arms(self):
        _, _, groups = self._entry() if self.entry_w.value else (None, None, [])
        with self.arms_w.hold_sync():
            self.arms_w.options = [g.label for g in groups]
            self.arms_w.value = tuple(g.label for g in groups)
            self.arms_w.rows = min(10, max(3, len(groups)))

    def _on_scale(self, _=None):
        self._set_entries()
        self.refresh()

    def _on_entry(self, _=None):
        if self._quiet:
            return
        self._quiet = True
        try:
            self._set_arms()
        finally:
            self._quiet = False
        self.refresh()

    # ------------------------------------------------------------------ drawing
    def render(self) -> list:
        """What the output shows for the widgets' current values: figures, Markdown and styled tables, or
        one line of text saying why there is nothing to show."""
        from IPython.display import Markdown

        if not self.entry_w.value:
            return [f"no plan entries at scale {self.scale_w.value}"]
        cfg, results, groups = self._entry()
        if results.empty:
            return [f"no runs of {self.entry_w.value} in {self.store().root}: run the study first"]
        chosen = [g for g in groups if g.label in self.arms_w.value]
        if not chosen:
            return ["No arm selected: pick at least one arm."]
        metric = self.metric_w.value
        if self.view_w.value == "per class":
            key, table = per_class_values(self.store(), results, chosen, metric)
            note = [] if metric in PER_CLASS else [
                Markdown(f"Per class: {key} (only accuracy and agreement are defined per class).")]
            return note + [per_class_figure(table, chosen, key)]
        if not measured(results, metric):
            return [f"{label(metric)} was not measured in this entry."]
        items = [per_seed_figure(results, chosen, metric)]
        if metric in DIRECTIONS:
            for title, table in tests_tables(self._tests(), metric).items():
                items.append(Markdown(f"**{title}** (the main arms, as in the book)"))
                items.append(tests_table(table) if len(table) else Markdown("none"))
        return items

    def refresh(self, *_):
        """Redraw the output (every widget's change calls this). The outputs are formatted here and set on the
        Output widget in one assignment, not captured with `with out:` (whose capture of the kernel's streams
        can stall a papermill run of ipykernel 7 on a loaded machine, and flickers)."""
        if self._quiet:
            return
        from IPython.core.interactiveshell import InteractiveShell

        fmt = InteractiveShell.instance().display_formatter.format
        with plt.rc_context(STYLE):  # the book's legible sizes, drawn here, without changing the user's defaults
            outputs = self._formatted(fmt)
        self.out.outputs = tuple(outputs)

    def _formatted(self, fmt) -> list:
        outputs = []
        for item in self.render():
            if isinstance(item, str):
                outputs.append({"output_type": "stream", "name": "stdout", "text": item + "\n"})
                continue
            data, metadata = fmt(item)
            outputs.append({"output_type": "display_data", "data": data, "metadata": metadata})
            if isinstance(item, plt.Figure):
                plt.close(item)  # shown once, not again by the inline backend
        return outputs
