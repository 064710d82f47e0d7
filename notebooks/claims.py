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
from IPython.display import Markdown, display

from kdlib import load_study
from kdlib.paths import from_root
from kdlib.analysis import collect_summaries
from kdlib.claims import verdicts
from kdlib.store import RunStore

study = load_study(study_file)
summaries, missing = collect_summaries(study, scale, RunStore(from_root(results) / "runs"))

# %% [markdown]
# Each verdict below is computed by `kdlib.claims.verdicts` from the results of this build; none is
# written by hand. *Not tested at this scale* means the setups the claim needs did not run (most need
# the paper scale on a GPU). The rules: claim 1 needs significant kd > control agreement in at least one
# but not every setup; claim 2 holds where every significant setup gains fewer than a few points;
# claim 3 where, in every significant setup, the relative rise of A- exceeds that of A+; claim 4 where kd
# is not significantly more accurate than rcd in at least one setup; claim 7 where, with a teacher that
# learned its backdoor (lift of at least 50 points), the kd student's lift of the trigger over its base
# rate of predicting the target class is significantly above the control's. "Setups" are the entries of the
# scale's plan in `study.yaml`, so temperature / alpha sweeps and feature variants count as setups;
# claims 1-6 use only the setups with a clean (not backdoored) teacher.

# %% tags=["remove-input"]
v = verdicts(summaries)
display(Markdown(f"Scale **{scale}**, {len(summaries)} setups with complete results"
                 + (f"; incomplete and left out: {', '.join(missing)}" if missing else "") + "."))
display(v.style.hide(axis="index").set_properties(subset=["evidence", "statement"], **{"text-align": "left"})
        .map(lambda x: {"supported": "background-color: #d9f2d9", "not supported": "background-color: #f8d7d7"}
             .get(x, "background-color: #eeeeee"), subset=["verdict"]))
