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

check_parameters(globals(), _names_before_parameters, "limitations")

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from kdlib.book import limitations as lim
from kdlib.book.evidence import BookEvidence

evidence = BookEvidence.load(study_file, scale, results_dir, shipped)
study = evidence.study

# %% [markdown]
# What this book cannot tell you, and why. Numbers on this page are read from the stores and the study file
# of this build.
#
# ## Teachers short of the paper's regime
# The paper trains full-size networks on full datasets (ResNet-18 on CIFAR-10 reaches about 93-95 % test
# accuracy with augmentation and fits its training set). Here the teachers are smaller and some data sets are
# subsets; a teacher that does not fit its training set decides neither claim 2 nor claim 6, and its students'
# agreement gain has more room to grow than in the paper's regime (see the chapter on the regime). Each
# complete entry with its own teacher:

# %% tags=["remove-input"]
teachers = lim.teacher_table(evidence)
if teachers.empty:
    display(Markdown("No complete entry in this build."))
else:
    display(teachers.style.hide(axis="index").format({"teacher test (%)": "{:.1f}", "teacher train (%)": "{:.1f}"}))

# %% [markdown]
# ## Scaled-down architectures and other reconstructed choices
# The paper's body (hyperparameters, tables) was not available to this project. Every item the study file
# marks as reconstructed rather than the paper's, setup by setup (architectures at the CPU scales are smaller
# members of the paper's families, or stand-ins):

# %% tags=["remove-input"]
items = lim.reconstructed_items(study)
display(Markdown(f"{len(items)} reconstructed items over {items['setup'].nunique()} setups."))
display(items.style.hide(axis="index").set_properties(**{"text-align": "left"}))

# %% [markdown]
# ## Which alpha?
# The paper's "alpha = 0.9" is either the weight of the KD term or the weight of the labels' cross-entropy
# (the same authors' earlier code weights the labels by alpha). Every entry runs both readings, and every
# verdict is given under each; where they differ, the claims page says so. Neither is known to be the paper's.
#
# ## The seed count's p-value floor

# %% tags=["remove-input"]
n = study.scale_info(scale).get("n_seeds", 10)
display(Markdown(lim.power_sentence(n, len(study.defaults.get("primary") or [1, 2, 3]))))

# %% [markdown]
# ## What has never run
# Plan entries with missing runs in this build: the paper scale's entries need a GPU, which this project has
# not had; pending entries are still training over working sessions.

# %% tags=["remove-input"]
missing = lim.never_run(study, evidence)
display(Markdown(f"{len(missing)} entries." if len(missing) else "Every plan entry of the scales shown has run."))
if len(missing):
    display(missing.style.hide(axis="index"))
