"""The GPU run plan page: every paper-scale entry with its expected cost and provenance, and what a GPU
check has measured so far."""
from __future__ import annotations

import json

import pandas as pd

from .run_costs import BENCH_RESULTS, arch_label, device_kind, estimate_costs
from ..progress import fmt_seconds
from ..results import ResultsFolder


def latest_report() -> dict | None:
    reports = sorted(BENCH_RESULTS.glob("gpu_check*.json"))
    return json.loads(reports[-1].read_text()) if reports else None


def gpu_status(study) -> str:
    report = latest_report()
    store = ResultsFolder.of(study, "paper").existing_store()
    hashes = store.hashes() if store is not None else []
    n_runs = len(hashes)
    on_cpu = sum(device_kind(store.provenance(h).get("device", "")) == "cpu" for h in hashes)
    if report is None:
        lines = ["**The paper scale is untested on a GPU: no GPU has run this project's code yet.** Every GPU time "
                 "below is an estimate"
                 + (f"; the {on_cpu} paper-scale runs in this checkout were computed on the CPU (their chapters are in "
                    "this book, marked so) and do not count as GPU measurements." if on_cpu else
                    ", and no chapter of the paper's setups is in this book.")]
    else:
        r = report
        lines = [f"Last GPU check: {r.get('device', '?')} on {r.get('date', '?')} (code `{r.get('code_version', '?')}`), "
                 f"{r.get('wall_seconds', 0):.0f} s in all."]
        teacher = r.get("fast_teacher") or {}
        if teacher:
            lines.append(f"`fast` ResNet-18 CIFAR-10 teacher: {100 * teacher.get('accuracy', float('nan')):.2f} % test "
                         f"accuracy in {teacher.get('seconds', float('nan')):.1f} s (target: >= 94 % in <= 30 s).")
    lines.append(f"Stored paper-scale runs in this checkout: {n_runs}.")
    return "\n\n".join(lines)


def recipe_costs(study, recipes=("fast", "authors")) -> dict:
    """The whole paper plan's cost (seconds on one GPU, distinct runs, measured or estimated) under each
    training recipe: every entry switched to that recipe where its setup offers it."""
    from dataclasses import replace

    from ..config import ConfigError

    out = {}
    for recipe in recipes:
        entries = []
        for e in study.plan("paper"):
            entry = replace(e, params={**e.params, "recipe": recipe})
            try:
                study.entry_setup("paper", entry)
            except ConfigError:  # a setup without this recipe keeps its own
                entry = e
            entries.append(entry)
        costs = estimate_costs(study, "paper", entries, device="cuda")
        out[recipe] = {"seconds": costs["_plan"]["seconds"], "runs": costs["_plan"]["runs"],
                       "estimated": any(costs[e.id]["source"] != "measured" for e in entries)}
    return out


def recipes_note(study) -> str:
    """The plan's GPU-hours under each recipe, set beside the paper's own figure (more than 1,000 GPU-hours)."""
    costs = recipe_costs(study)
    listed = estimate_costs(study, "paper", study.plan("paper"), device="cuda")["_plan"]
    parts = [f"every entry on `{r}`: about {c['seconds'] / 3600:,.1f} GPU-hours ({c['runs']} distinct runs"
             + (", estimated" if c["estimated"] else ", measured") + ")" for r, c in costs.items()]
    return (f"The plan as listed (the table's total: each entry's own recipe, so the `authors`-recipe pair for claim 6 "
            f"beside the `fast` entries) is {listed['runs']} distinct runs, about **{listed['seconds'] / 3600:,.1f} "
            "GPU-hours** on one GPU. Switched wholesale to one recipe, where a setup offers it (the pair then "
            "coincides with entries already listed, so there are fewer distinct runs): " + "; ".join(parts)
            + ". The paper reports more than 1,000 GPU-hours for its "
            "experiments. That is not this plan's cost: the paper's recipe is only reconstructed here (`authors`: "
            "100 to 200 epochs at a constant learning rate, the closest to it), and the paper's total may also count "
            "runs, seeds and tuning that this plan does not repeat.")


def gpu_plan_table(study) -> tuple[pd.DataFrame, str]:
    entries = study.plan("paper")
    costs = estimate_costs(study, "paper", entries, device="cuda")
    rows = []
    for e in entries:
        c = costs[e.id]
        cfg = c["setup"]
        models = f"{arch_label(cfg.teacher)} → {arch_label(cfg.student)}" + (f", {cfg.variant}" if cfg.variant != "logit" else "")
        est = "" if c["source"] == "measured" else " *"
        rows.append({"entry": e.id, "models": models,
                     "KD weights, T": f"{', '.join(f'{w:g}' for w in cfg.kd_weights)}; {cfg.temperature:g}",
                     "runs": len(cfg.runs()), "per run": fmt_seconds(c["per_run_seconds"]) + est,
                     "entry total": c["total"] + est})
    plan = costs["_plan"]
    total = ("\* estimated. "
             f"**Whole plan**: {plan['runs']} distinct runs (teachers and controls shared by sweeps count once), "
             f"about **{fmt_seconds(plan['seconds'])}** on one GPU, "
             + ("estimated." if any(costs[e.id]["source"] != "measured" for e in entries) else "measured."))
    return pd.DataFrame(rows), total
