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
results_dir = None
study_file = None
book_scale = None
shipped = []

# %% tags=["remove-cell"]
from kdlib.book.notebooks import check_parameters  # a misspelled parameter stops the chapter here

check_parameters(globals(), _names_before_parameters, "appendix")

# %% tags=["remove-cell"]
import json

import pandas as pd
from IPython.display import HTML, Markdown, display

from kdlib.book.formatting import csv_link, details
from kdlib.book.compute_ledger import compute_ledger, damage_table, determinism_note, replications_table
from kdlib.paths import from_root
from kdlib.provenance import code_version, package_versions
from kdlib.studyfile import load_study

study = load_study(study_file)

# %% [markdown]
# ## Code and packages

# %% tags=["remove-input"]
display(Markdown(f"Code version (git describe): `{code_version()}`; study file `{study.path.name}`, scale `{scale}`"
                 + (f", with the shipped runs of {', '.join(f'`{s}`' for s in shipped)}" if shipped else "") + "."))
display(Markdown(", ".join(f"{p} `{v}`" for p, v in sorted(package_versions().items())) + "."))

# %% [markdown]
# ## Reproducibility of a run
# A run's folder is named by the hash of its full config; finished runs are never retrained. On the CPU,
# every run trains with a fixed number of intra-op threads (recorded in its provenance), so its numbers do
# not depend on the machine's core count or on how many runs train at once. Each run also records a
# fingerprint of its training data (the tensors in their order); a student refuses teacher logits computed
# on other data.

# %% tags=["remove-input"]
display(Markdown(determinism_note(study, [scale] + list(shipped), results_dir)))
_replications = replications_table(study, [scale] + list(shipped), results_dir)
if len(_replications):
    display(Markdown(
        "**Entries retrained and compared.** Retrained on another kind of CPU (other kernels round differently), "
        "a run differs in every trajectory, so a retrained entry is judged by whether its tests read the same way "
        "and the claims' verdicts stay (`python -m kdlib.driver --compare-with REV --record`; each entry's chapter "
        "shows its tables under \"Retrained and compared\"):"))
    display(_replications.style.hide(axis="index"))

# %% [markdown]
# ## Compute ledger
# Device and seconds of every run, summed per plan entry in plan order (training time only; chapter and
# book time are printed by the driver). Teachers and controls shared by several entries (sweeps, variants)
# count in each entry that uses them; the total counts every distinct run once. `wall_minutes` is the wall
# time of the training phases that trained an entry alone (from the scale's training log; empty where one
# phase trained the whole plan), with the phases' notes: a phase that shared the cores with other work says
# so, and its wall time (and its runs' seconds) overstate the cost on an idle machine. Each run's folder in the
# store, named by its config hash, also holds its config, metrics, test logits and provenance.

# %% tags=["remove-input"]
for s in [scale] + list(shipped):
    per_entry, runs = compute_ledger(study, s, results_dir if s == scale else None)
    if per_entry is None:
        display(Markdown(f"**{s}**: no runs in this build."))
        continue
    display(Markdown(f"### Scale `{s}`"))
    display(per_entry.style.format({"seconds": "{:.1f}", "wall_minutes": "{:.1f}"}, na_rep="-"))
    cols = ["entry", "arm", "seed", "kd_weight", "rcd_noise", "hash", "seconds", "device"]
    if runs["gpu_utilisation"].notna().any():
        cols.append("gpu_utilisation")
    table = runs[cols].style.format({"seconds": "{:.2f}", "kd_weight": "{:g}", "gpu_utilisation": "{:.0f} %"},
                                    na_rep="-").hide(axis="index")
    # about a thousand rows: one click away, and as a CSV file
    display(HTML(f"<p>Every run of scale <code>{s}</code> ({len(runs):,} rows; code version at training time: "
                 + ", ".join(f"<code>{v}</code>" for v in runs["code_version"].unique()) + "): "
                 + csv_link(runs.drop(columns=[c for c in ("setup", "is_main") if c in runs]), f"runs-{s}.csv",
                            "download every run with every metric as CSV") + "</p>"
                 + details(f"every run of scale {s}, one row each", table.to_html(), raw_html=True)))

# a run that does not vouch for itself (its folder, config, manifest or files) is left out of every table
for s in [scale] + list(shipped):
    damage = damage_table(study, s, results_dir if s == scale else None)
    if len(damage):
        display(Markdown(f"**Damaged runs of scale `{s}`, left out of every table ({len(damage)}):**"))
        display(damage.style.hide(axis="index"))

driver_log = from_root(results_dir or study.results_dir(scale)) / "driver_log.json"
if driver_log.is_file():
    log = json.loads(driver_log.read_text())
    display(Markdown("Chapter execution times as the previous driver run recorded them (seconds; a chapter it "
                     "reused, its inputs unchanged, shows the time it took when it was executed):"))
    times = pd.Series(log.get("chapters_seconds", {}), dtype=float).rename_axis("chapter").to_frame("seconds")
    times["reused"] = ["yes" if c in set(log.get("reused_chapters", [])) else "no" for c in times.index]
    display(times.style.format({"seconds": "{:.1f}"}))  # one row per chapter: a single wide row overflowed the page

# %% [markdown]
# ## The study file
# The single config behind this book (`study.yaml`): protocol defaults, training recipes, scales, setups,
# and each scale's plan.

# %% tags=["remove-input"]
display(Markdown("```yaml\n" + study.path.read_text() + "\n```"))
