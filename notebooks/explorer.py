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
# Live views of a finished study: pick a scale, a plan entry, the arms, a metric and a view. Per-seed
# values and the tests are the book's (same units, labels and test families); the per-class view is
# recomputed from the stored test logits. Nothing is retrained and no dataset is needed. The widgets are
# `kdlib.book.explorer.Explorer`; run the study first (`bash run.sh study`).

# %% tags=["parameters"]
scale = None         # default: cpu where its runs exist; the menu lists every scale with runs
results_dir = None   # another run store for `scale` than the scale's own
study_file = None

# %%
from kdlib.book.explorer import Explorer

explorer = Explorer(scale, results_dir, study_file)
explorer
