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

check_parameters(globals(), _names_before_parameters, "regime")

# %% tags=["remove-cell"]
from IPython.display import Markdown, display
import pandas as pd

from kdlib.book import regime
from kdlib.book.evidence import BookEvidence
from kdlib.book.formatting import entry_link, fmt_p

from kdlib.book.figures import book_style

book_style()  # the book's legible figure sizes (kdlib.book.figures.STYLE)
evidence = BookEvidence.load(study_file, scale, results_dir, shipped)
readings = evidence.readings()
tables = {w: regime.regime_rows(evidence, w) for w in readings}

# %% [markdown]
# How much of a verdict is set by the regime the models train in? A weak teacher and weak students leave
# the control much to disagree on, so the kd - control **agreement gain in points** can grow with that room
# alone. The **share of the control's disagreement that kd closes**, (kd - control) / (1 - control
# agreement), asks how much of the room kd uses. Each point below is an independent setup (its own teachers
# and controls; backdoor entries and other KD objectives left out, as on the claims page) of every scale
# this book shows, against the teacher's test accuracy and the **controls' mutual disagreement** (the mean
# fraction of test examples on which two control students of different seeds disagree: how much the
# function is left open by the data and the recipe). Intervals are 95 % Student t intervals over the seeds'
# paired gains; correlations are Spearman's, with two-sided p, over the setups shown. Stars mark the
# **regime sweep** (the `full` scale: one network and recipe on CIFAR-10 at several training-set sizes, up to
# the full 50,000 images), where the setup is held fixed and only the regime moves.

# %% tags=["remove-input"]
display(Markdown(evidence.status()))


def table(rows):
    rows = rows.assign(_key=rows["scale"] + ": " + rows["id"]).sort_values("_key")
    t = rows.assign(setup=[entry_link(s, i, prefix=f"{s}: ") for s, i in zip(rows["scale"], rows["id"])])
    t["teacher test / train (%)"] = [f"{a:.1f} / {b:.1f}" for a, b in zip(rows["teacher_accuracy"], rows["teacher_train_accuracy"])]
    t["gain (points, 95 % CI)"] = [f"{g:+.2f} [{lo:+.2f}, {hi:+.2f}]" for g, lo, hi in
                                  zip(rows["gain_points"], rows["gain_lo"], rows["gain_hi"])]
    t["control disagrees (%)"] = rows["control_disagreement"]
    t["share closed (%)"] = 100 * rows["share_closed"]
    t["controls' mutual disagreement (%)"] = rows["control_mutual_disagreement"]
    t["significant"] = rows["significant_transfer"].map({True: "yes", False: "no"})
    cols = ["setup", "teacher test / train (%)", "gain (points, 95 % CI)", "control disagrees (%)", "share closed (%)",
            "controls' mutual disagreement (%)", "significant"]
    return (t[cols].style.hide(axis="index")
            .format({c: "{:.1f}" for c in cols[3:6]})
            .set_properties(subset=cols[1:3], **{"white-space": "nowrap"}))


for i, w in enumerate(readings):
    rows = tables[w]
    display(Markdown(f"## KD weight w = {w:g}" + (" (the main reading)" if i == 0 else "")))
    if rows.empty:
        display(Markdown("No complete independent setup under this reading."))
        continue
    display(table(rows))
    corr = regime.correlations(rows)
    display(Markdown(f"Spearman correlations over the {len(rows)} independent setups:"))
    display(corr.rename(columns={"y": "quantity", "x": "against", "rho": "Spearman rho", "p": "p (two-sided)"})
            .style.hide(axis="index").format({"Spearman rho": "{:+.2f}", "p (two-sided)": fmt_p}))
    fig = regime.figure(rows, f"Independent setups, KD weight {w:g}")

# %% [markdown]
# ## The regime sweep
# The same network and recipe at each training-set size (the `full` scale), in order of the teacher's test
# accuracy: whether the gain and the share closed move as the teacher approaches the paper's regime.
# While an entry of the sweep is still training (it takes several working sessions on a CPU), the seeds whose
# four arms are stored so far are listed one per seed and marked interim: which way the numbers point, with
# no test and no verdict resting on them. The last column splits the gain between the examples the teacher
# gets wrong and those it gets right (the paper's asymmetry).

# %% tags=["remove-input"]
def interim_table(rows):
    t = pd.DataFrame({"seed": rows["seed"]})
    t["teacher test / train (%)"] = [f"{a:.2f} / {b:.2f}" for a, b in zip(rows["teacher_accuracy"], rows["teacher_train_accuracy"])]
    for what, key in (("accuracy", "accuracy"), ("agreement with teacher", "agreement")):
        t[f"{what} (%): control / kd / rcd"] = [" / ".join(f"{v:.2f}" for v in r) for r in
                                                 zip(rows[f"control_{key}"], rows[f"kd_{key}"], rows[f"rcd_{key}"])]
    t["gain (points)"] = rows["gain_points"]
    t["share closed (%)"] = 100 * rows["share_closed"]
    t["gain on teacher errors / correct (points)"] = [
        f"{a:+.2f} / {b:+.2f}" for a, b in zip(rows["gain_on_errors"], rows["gain_on_correct"])]
    return (t.style.hide(axis="index").format({"gain (points)": "{:+.2f}", "share closed (%)": "{:.1f}"})
            .set_properties(subset=list(t.columns[1:4]) + [t.columns[-1]], **{"white-space": "nowrap"}))


for w in readings:
    sweep = regime.sweep_rows(tables[w])
    if sweep.empty:
        pending = [e for s in regime.SWEEP_SCALES if s in evidence.study.scales for e in evidence.study.pending(s)]
        display(Markdown(f"**w = {w:g}:** no entry of the regime sweep is complete in this build"
                         + (f" (still training: {', '.join(pending)})." if pending else ".")))
    else:
        display(Markdown(f"**w = {w:g}**"))
        display(table(sweep))
    interim = regime.interim_rows(evidence, w)
    for (scale_of, entry_id), rows in (interim.groupby(["scale", "id"], sort=False) if len(interim) else ()):
        display(Markdown(
            f"**w = {w:g}, `{scale_of}: {entry_id}` so far** (interim: {len(rows)} of "
            f"{rows['n_seeds_planned'].iloc[0]} seeds have all four arms stored; the entry is still training, and no "
            f"test or verdict rests on these rows): mean gain {rows['gain_points'].mean():+.2f} points, mean share "
            f"of the control's disagreement closed {100 * rows['share_closed'].mean():.1f} %."))
        display(interim_table(rows))
