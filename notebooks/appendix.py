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
import json

import pandas as pd
from IPython.display import Markdown, display

from kdlib import load_study
from kdlib.paths import from_root
from kdlib.analysis import plan_setups
from kdlib.provenance import code_version, package_versions
from kdlib.runner import setup_results
from kdlib.store import RunStore

study = load_study(study_file)
store = RunStore(from_root(results) / "runs")

# %% [markdown]
# ## Code and packages

# %% tags=["remove-input"]
display(Markdown(f"Code version (git describe): `{code_version()}`; study file `{study.path.name}`, scale `{scale}`."))
versions = pd.DataFrame(sorted(package_versions().items()), columns=["package", "version"])
display(Markdown(", ".join(f"{p} `{v}`" for p, v in versions.itertuples(index=False)) + "."))

# %% [markdown]
# ## Compute ledger
# Device and seconds of every run, summed per plan entry in plan order (training time only; notebook
# and book time are printed by the driver). Teachers and controls shared by several entries (sweeps,
# variants) count in each entry that uses them; the total counts every distinct run once. Each run's
# folder in the store, named by its config hash, also holds its config, metrics, test logits and
# provenance.

# %% tags=["remove-input"]
frames = []
for entry_id, cfg in plan_setups(study, scale):
    r = setup_results(cfg, store)
    if len(r):
        frames.append(r.assign(entry=entry_id))
ledger = pd.concat(frames) if frames else pd.DataFrame(columns=["entry", "arm", "seed", "hash", "seconds", "device"])
per_setup = ledger.groupby("entry", sort=False).agg(runs=("hash", "size"), seeds=("seed", "nunique"),
                                                    seconds=("seconds", "sum"), device=("device", "first"))
distinct = ledger.drop_duplicates("hash")
per_setup.loc["total (distinct runs)"] = [len(distinct), "", distinct["seconds"].sum(), ", ".join(distinct["device"].unique())]
display(per_setup.style.format({"seconds": "{:.1f}"}))
display(Markdown("Every run (seconds of training; code version at training time: "
                 + ", ".join(f"`{v}`" for v in ledger["code_version"].unique()) + "):"))
display(ledger.assign(rcd_noise=ledger["rcd_noise"].fillna("-"))[["entry", "arm", "seed", "rcd_noise", "hash", "seconds"]]
        .reset_index(drop=True).style.format({"seconds": "{:.2f}"}).hide(axis="index"))
driver_log = from_root(results) / "driver_log.json"
if driver_log.is_file():
    display(Markdown("Notebook execution times of the previous driver run (seconds):"))
    display(pd.Series(json.loads(driver_log.read_text())).to_frame("seconds").T)

# %% [markdown]
# ## The study file
# The single config behind this book (`study.yaml`): protocol defaults, scales, setups, and the plan.

# %% tags=["remove-input"]
display(Markdown("```yaml\n" + study.path.read_text() + "\n```"))
