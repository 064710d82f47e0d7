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

check_parameters(globals(), _names_before_parameters, "claims")

# %% tags=["remove-cell"]
from IPython.display import HTML, Markdown, display

import pandas as pd

from kdlib.book.claims import (SENSITIVITY, anchor, closest_to_paper, columns_by_reading, evidence_html, flips_sentence,
                               independence_table, linked_matrix, linked_text, regime_sentences, sensitivity,
                               verdict_columns, verdict_table)
from kdlib.book.formatting import details
from kdlib.book.evidence import BookEvidence

evidence = BookEvidence.load(study_file, scale, results_dir, shipped)
columns = evidence.claim_columns()
matrix, texts, reasons = verdict_table(columns)
readings = evidence.readings()

# %% tags=["remove-input"]
display(Markdown(
    "Each verdict is computed from this build's stored runs (none is written by hand). A table per reading of "
    "the paper's alpha (the KD weight w), the main one first; a column per scale: **cpu** the offline stand-in "
    "datasets, **mid** and **full** the paper's own datasets (scaled-down models; CIFAR-10 on its full training "
    "set), **paper** the paper's setups. <span style='background:#d9f2d9'>supported</span> · <span style='background:#fbeacb'>not "
    "supported</span> · <span style='background:#f8d7d7'>contradicted</span> (significant evidence of the "
    "opposite) · <span style='background:#eeeeee'>not testable / not tested</span>. Each verdict links to its "
    "evidence below; how verdicts are reached is folded under the table."))


def colour(v):
    return {"supported": "background-color: #d9f2d9", "not supported": "background-color: #fbeacb",
            "contradicted": "background-color: #f8d7d7"}.get(
        v, "background-color: #eeeeee" if isinstance(v, str) and v.startswith(("not ", "no ")) else "")


verdict_cols = verdict_columns(matrix)
# a table per reading: four scale columns fit the text column, eight did not
for w, names in columns_by_reading(matrix, readings):
    shown = linked_matrix(matrix[["statement"] + list(names)], reasons).rename(columns=names)
    raw = matrix[list(names)].rename(columns=names)
    display(Markdown(f"**KD weight w = {w:g}**" + (" (the main reading)" if w == readings[0] else "")))
    display(shown.style
            .apply(lambda col: [colour(v) for v in raw[col.name]], subset=list(names.values()))
            .set_properties(subset=["statement"], **{"text-align": "left"}))

# %% tags=["remove-input"]
display(Markdown(flips_sentence(matrix)))
_readings = ", ".join(f"<b>w = {w:g}</b>" + (" (the main reading)" if i == 0 else "") for i, w in enumerate(readings))
display(HTML(details("How to read a verdict", (
    "<p>Each verdict is computed by <code>kdlib.book.claims</code> from this build's stored runs. A column is one body "
    f"of evidence: a scale of the study under one reading of the paper's alpha, the weight w of the KD term ({_readings}; "
    "see the methods for which reading is whose). The mid-scale columns (the paper's own datasets, CIFAR-10, spoken "
    "digits and IMDB, with scaled-down members of its architecture families, trained on the CPU and shipped with the "
    "book) and the full-scale columns (CIFAR-10 on the full training set) are <b>the closest evidence to the paper's "
    "own setups in this book</b>; the offline CPU columns use small stand-in datasets.</p><p>A judged verdict says "
    "which way the evidence points: <b>supported</b>, <b>not supported</b> (no significant evidence for the claim), or "
    "<b>contradicted</b> (significant evidence of the opposite, e.g. transfer significant in every setup where the "
    "claim says some but not all); the short reason under each verdict says what decided it. <i>Not tested at this "
    "scale</i>: the setups a claim needs did not run (most need the paper scale on a GPU); <i>not run under this "
    "reading</i>: they ran at the scale under another reading only; <i>not testable at this seed count</i>: they ran, "
    "but the deciding test cannot reach significance after its correction with the pairs it keeps (zero differences "
    "drop out of a signed-rank test); <i>not testable: teacher not fitted</i>: the setups that would decide have "
    "teachers below the study file's <code>fitted_train_accuracy</code> on their training set; <i>no significant "
    "transfer to judge</i>: claims 2 and 3, which ask about the setups with significant transfer, have none.</p>"),
    raw_html=True)
    + details("The rules, in short", (
    "<p>Setups that share their teachers and controls (sweeps of temperature or KD weight, student sizes, feature "
    "variants) count once, with the sweeps listed beside them. A setup counts for a claim only where its deciding "
    "test can pass its correction with the non-zero differences it kept, and only where the control leaves enough "
    "headroom: a setup at the ceiling counts neither way and is named.</p><ul>"
    "<li>Claim 1: significant kd &gt; control agreement in at least one but not every independent setup (a control "
    "that disagrees with its teacher on fewer than <code>min_disagreements</code> test examples per seed, from the "
    "study file, is at the ceiling).</li>"
    "<li>Claim 2: the gain shown below 5 points (a one-sided test: its upper confidence bound below 5) wherever "
    "transfer is significant; setups whose control agrees within 5 points of 100 % count neither way.</li>"
    "<li>Claim 3: a significant rise of A- and a significantly larger share of headroom closed on A- than on A+ "
    "(paired by seed, BY over the significant setups whose test can reach significance), in every such setup.</li>"
    "<li>Claim 4: rcd within the stated equivalence margin of kd's accuracy (two one-sided tests) or significantly "
    "above it (BY over the setups), in at least one setup.</li>"
    "<li>Claim 5: significant kd &gt; control agreement (primary family) in CIFAR-10 self-distillation for both a "
    "ResNet and a VGG (the paper's ResNet-18 and VGG-19 where they ran, else smaller members of the two families, "
    "and the evidence says so).</li>"
    "<li>Claim 6: a larger ViT than CNN generalisation gap, same data, training length and optimiser, paired by "
    "seed.</li>"
    "<li>Claim 7: a teacher that learned its backdoor and a kd student whose trigger lift is significantly above "
    "the control's (a primary test of each backdoor setup).</li></ul>"
    "<p>The claims are about the paper's KD (Hinton's): entries distilled with another KD objective (DKD, MSE, "
    "DIST, logit standardisation, NKD) are not part of the verdicts; the chapter "
    "<a href='objectives.html'>KD objectives under the paper's controls</a> sets them beside Hinton's.</p>"),
    raw_html=True)))
display(Markdown(evidence.status()))

# %% [markdown]
# ## How each verdict depends on the reconstructed thresholds
# Every threshold the rules use is reconstructed (the paper's body is not available). Each is varied alone
# over the values below, every verdict recomputed from the same stored runs: a cell reads *robust* where no
# value changes the verdict, else the values that do and the verdict they give. `min_disagreements` is varied for
# claim 1's ceiling (claim 3's per-seed exclusion keeps the study file's value); the TOST margin is recomputed
# from the per-seed accuracies.

# %% tags=["remove-input"]
display(Markdown("Values tried: " + "; ".join(f"`{k}` {', '.join(f'{v:g}' for v in vs)}" for k, vs in SENSITIVITY.items())
                 + " (accuracies and margins as fractions, the gain bound in points)."))
sens = sensitivity(columns)
sens_table = pd.DataFrame({c: {k: sens[(c, k)] for k in matrix.index} for c in verdict_cols})
sens_table.index.name = "claim"
display(sens_table.style.map(lambda v: "" if v == "robust" else "background-color: #fff3cd")
        .set_properties(**{"text-align": "left", "font-size": "0.85em"}))

# %% [markdown]
# ## Does a verdict change with the regime?
# The `mid` columns judge the claims on CIFAR-10 models trained on 5,000 images (teachers at 44-63 % test
# accuracy) beside spoken digits and IMDB; the `full` columns on one CIFAR-10 network and recipe trained on the
# full training set and on a 10,000-image subset (the regime sweep; teachers near the paper's accuracy). Claim by
# claim, under each reading (see the chapter on the regime for the gains against teacher accuracy):

# %% tags=["remove-input"]
display(Markdown(regime_sentences(matrix)))

# %% tags=["remove-input"]
paper_like = [s for s in ("mid", "full", "paper") if closest_to_paper(matrix, s)]
if paper_like:
    display(Markdown("## Closest to the paper\n\nThe paper's abstract makes three claims and a safety point. "
                     "Here they are against the verdicts on the paper's own datasets, column by column "
                     "(written from the table above):"))
for s in paper_like:
    display(Markdown(f"**{evidence.label(s)}**\n\n{closest_to_paper(matrix, s)}"))

# %% [markdown]
# ## Which entries are independent
# Entries that share a teacher or a control run are one piece of evidence for claims 1-6 (the first in plan
# order counts; the others are listed beside it). Backdoor entries count for claim 7 only.

# %% tags=["remove-input"]
_independent = independence_table(columns)
for _c in _independent.columns[2:]:  # every entry named links to its chapter
    _independent[_c] = [linked_text(col, v, columns) for v, col in zip(_independent[_c], _independent["column"])]
display(_independent.style.hide(axis="index").set_properties(**{"text-align": "left"}))

# %% [markdown]
# ## The evidence behind each verdict

# %% tags=["remove-input"]
for k, row in matrix.iterrows():
    display(Markdown(f"**Claim {k}.** {row['statement']}"))
    display(HTML("".join(details(f"{c}: {row[c]}", evidence_html(c, texts[(c, k)], columns), raw_html=True,
                                 anchor=anchor(c, k)) for c in verdict_cols)))
