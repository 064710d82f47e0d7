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

# %% tags=["remove-cell"]
from kdlib.book.notebooks import check_parameters  # a misspelled parameter stops the chapter here

check_parameters(globals(), _names_before_parameters, "gpu_plan")

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from kdlib.book.gpu_plan import gpu_plan_table, gpu_status, recipes_note
from kdlib.studyfile import load_study

study = load_study(study_file)

# %% [markdown]
# The paper's setups run at the `paper` scale: full datasets, the paper's architectures, 10 seeds, on a
# GPU. This page lists every entry of that plan with what it costs, **measured** where a GPU has run it
# (a `benchmarks/gpu_check` report or stored runs) and otherwise **estimated** from the model's
# multiply-accumulates at an assumed 25 % of an H100's bf16 peak (marked so).

# %% tags=["remove-input"]
display(Markdown(gpu_status(study)))

# %% tags=["remove-input"]
table, total = gpu_plan_table(study)
display(table.style.hide(axis="index").set_table_attributes('style="font-size: 0.85em"')
        .set_properties(subset=["per run", "entry total"], **{"white-space": "nowrap"}))
display(Markdown(total + " Every entry uses the `fast` recipe by default. Each setup chapter lists the provenance of "
                 "every choice (the paper's, reconstructed from the authors' sibling code, or this project's)."))
display(Markdown(recipes_note(study)))

# %% [markdown]
# The one command that runs the whole plan on one GPU (it checks every entry and every dataset before
# training anything, and resumes where it stopped):
#
# ```bash
# bash run.sh study --scale paper --device cuda
# ```
#
# Each entry takes the `recipe` parameter: `fast` (this project's recipe, tuned for time to accuracy; the
# default) or `authors` (reconstructed from the authors' sibling code: SGD momentum 0.9, learning rate
# 1e-3, batch 256, no weight decay, no augmentation, 100 epochs for vision and 200 for language). On
# a cluster, see [Running the paper scale on a cluster](../cluster.md).
