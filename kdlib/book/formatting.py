"""Display labels and table styles for the book: analysis tables keep plain keys, these name them for a
reader (units included) at the moment they are shown."""
from __future__ import annotations

import html

import pandas as pd

LABELS = {
    "accuracy": "test accuracy (%)", "loss": "test cross-entropy (nats)", "ece": "expected calibration error",
    "train_accuracy": "train accuracy (%)", "generalisation_gap": "train - test accuracy (points)",
    "agreement": "agreement with teacher (%)", "js_divergence": "JS divergence (nats)",
    "activation_distance": "activation distance (L2 on probabilities)",
    "kl_teacher_student": "KL(teacher || student) (nats)",
    "pos_agreement": "A+: agreement where teacher right (%)", "neg_agreement": "A-: agreement where teacher wrong (%)",
    "mi": "mutual information of predicted labels (nats)", "nmi": "normalised mutual information",
    "cka": "linear CKA of penultimate features",
    "cka_debiased": "debiased linear CKA (unbiased HSIC)", "mi_plugin_bias": "MI of unrelated models, (K-1)^2/2N (nats)",
    "backdoor_asr": "backdoor attack success (%)", "backdoor_clean_rate": "clean inputs -> target (%)",
    "backdoor_lift": "attack success - base rate of target (points)", "seeds": "seeds",
    # transfer table
    "pos_gain_points": "ΔA+ over control (points)", "neg_gain_points": "ΔA- over control (points)",
    "pos_gain_relative": "ΔA+ relative to control (%)", "neg_gain_relative": "ΔA- relative to control (%)",
    "pos_headroom": "headroom 1 - A+(control) (%)", "neg_headroom": "headroom 1 - A-(control) (%)",
    "pos_share_closed": "share of A+ headroom closed", "neg_share_closed": "share of A- headroom closed",
    "share_seeds": "seeds with both shares defined", "teacher_right": "teacher right (mean n)", "teacher_wrong": "teacher wrong (mean n)",
    "copied_right": "copied right answers (mean n)", "copied_wrong": "copied wrong answers (mean n)",
    # tests
    "family": "family", "comparison": "comparison", "metric": "metric", "difference": "mean difference ± SEM",
    "r": "rank-biserial r", "p_by": "p (BY)", "verdict": "verdict",
    # convergence
    "runs": "runs", "loss_flattened": "runs whose loss flattened", "final_loss": "final training loss",
    # readings
    "kd_weight": "KD weight w", "arm": "arm", "agreement_gain": "agreement - control (points)",
    "kd_gt_control_agreement_p_by": "kd > control agreement, p (BY)",
}

# Short labels for narrow places (the per-seed tabs, eight columns in a tab): units kept.
SHORT_LABELS = {
    "accuracy": "accuracy (%)", "agreement": "agreement (%)", "js_divergence": "JS div. (nats)",
    "pos_agreement": "A+ (%)", "neg_agreement": "A- (%)", "cka": "CKA", "generalisation_gap": "gap (points)",
    "activation_distance": "act. dist.", "kl_teacher_student": "KL (nats)", "mi": "MI (nats)", "nmi": "NMI",
    "seconds": "time (s)",
}


def short_label(key: str) -> str:
    return SHORT_LABELS.get(key, label(key))


def label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def relabel(df: pd.DataFrame, index: bool = True, columns: bool = True) -> pd.DataFrame:
    out = df.copy()
    if index:
        out.index = [label(str(i)) for i in out.index]
    if columns:
        out.columns = [label(str(c)) for c in out.columns]
    return out


def fmt_p(p: float) -> str:
    """A p-value to two significant figures, never rounded to 0 (0.0018, 0.05, 1, 9.8e-04)."""
    return "n/a" if p != p else (f"{p:.2g}" if p >= 0.001 else f"{p:.1e}")


COUNT_ROWS = ("teacher_right", "teacher_wrong", "copied_right", "copied_wrong")


def readings_table(df: pd.DataFrame):
    """kd and rcd under each reading of alpha: percentages to two decimals, the p-value with `fmt_p`."""
    shown = relabel(df, index=False)
    fmt = {label(c): ("{:g}" if c == "kd_weight" else fmt_p if c == "kd_gt_control_agreement_p_by" else "{:.2f}")
           for c in df.columns if pd.api.types.is_numeric_dtype(df[c])}
    return shown.style.hide(axis="index").format(fmt, na_rep="-")


def variants_table(df: pd.DataFrame):
    """Means per arm and RCD noise: rows named "control", "kd", "rcd: permuted", not Python tuples."""
    out = df.copy()
    out.index = [arm if noise in ("-", None) or noise != noise else f"{arm}: {noise}" for arm, noise in out.index]
    return relabel(out, index=False).style.format(precision=2)


def transfer_table(df: pd.DataFrame):
    """The transfer table of a setup (rows: quantities, columns: arms). The control is the reference, so its
    changes and shares are "-"; a relative change or share with no denominator is "n/a" (undefined),
    and counts of examples are whole numbers with a thousands separator."""
    t = df.copy().astype(object)
    for row in t.index:
        for col in t.columns:
            v = df.loc[row, col]
            if col == "control" and ("gain" in row or "share" in row):
                t.loc[row, col] = "-"
            elif v != v:
                t.loc[row, col] = "n/a"
            elif row in COUNT_ROWS:
                t.loc[row, col] = f"{v:,.0f}"
            elif "share" in row:
                t.loc[row, col] = f"{v:.2f}"
            else:
                t.loc[row, col] = f"{v:+.2f}" if "gain" in row else f"{v:.2f}"
    return relabel(t)


def undefined_note(df: pd.DataFrame) -> str:
    """Why a cell of the transfer table reads n/a, or "" when none does."""
    kd = df.drop(columns="control", errors="ignore")
    reasons = []
    if kd.loc[[r for r in kd.index if r.endswith("gain_relative")]].isna().any().any():
        reasons.append("a relative change is undefined where the control's A+ or A- is 0 (nothing to divide by)")
    if kd.loc[[r for r in kd.index if r.endswith("share_closed")]].isna().any().any():
        reasons.append("a share of headroom is undefined where the control leaves no headroom (A = 100 %) or the "
                       "teacher made no test errors in a seed (A- has no examples), in every seed")
    return ("*n/a*: " + "; ".join(reasons) + ". *-*: the control is the reference.") if reasons else \
        "*-*: the control is the reference."


def plain_name(key: str) -> str:
    """A metric's name without its unit, for a table whose column says what the numbers are:
    "A-: agreement where teacher wrong", not "neg_agreement"."""
    import re

    return re.sub(r" \([^()]*\)$", "", label(key))


def tests_table(compact: pd.DataFrame):
    """The compact hypothesis-test table, styled: significant rows in bold, metrics by name."""
    t = compact.copy()
    t["p_by"] = t["p_by"].map(fmt_p)
    if "metric" in t:
        t["metric"] = t["metric"].map(plain_name)
    sty = relabel(t, index=False).style.hide(axis="index")
    return sty.apply(lambda row: ["font-weight: bold" if row[label("verdict")] == "significant" else ""
                                  for _ in row], axis=1).set_properties(**{"white-space": "nowrap"})


def full_tests_html(t: pd.DataFrame) -> str:
    """Every test of a setup in a table that fits the text column: the family and comparison share a cell,
    the counts share one ("n (non-zero, excluded)"), each arm's mean and SEM share one, metrics by their
    short names; p-values to two significant figures, effect sizes to two decimals."""
    if t.empty:
        return "<p>No tests.</p>"

    def g(v, spec=".4g"):
        return "n/a" if v != v else format(v, spec)

    out = pd.DataFrame({
        "test": [f"{f}: {c}" for f, c in zip(t["family"], t["comparison"])],
        "metric": [plain_name(m) for m in t["metric"]],
        "n (≠ 0, excl.)": [f"{n} ({nz}, {ex})" for n, nz, ex in zip(t["n"], t["n_nonzero"], t["n_excluded"])],
        "a: mean ± SEM": [f"{g(m)} ± {g(s, '.2g')}" for m, s in zip(t["mean_a"], t["sem_a"])],
        "b: mean ± SEM": [f"{g(m)} ± {g(s, '.2g')}" for m, s in zip(t["mean_b"], t["sem_b"])],
        "a - b": [g(v, "+.3g") for v in t["mean_diff"]],
        "W": [g(v, "g") for v in t["W"]],
        "p": [fmt_p(v) for v in t["p"]],
        "p (BY)": [fmt_p(v) for v in t["p_by"]],
        "r": [g(v, "+.2f") for v in t["rbc"]],
        "sig.": ["yes" if v else "no" for v in t["significant"]],
        "smallest p (reachable)": [f"{fmt_p(m)} ({'yes' if r else 'no'})" for m, r in zip(t["min_p"], t["reachable"])],
    })
    # A column with one value in every row (the seeds used; the smallest p they allow) says it once, above
    # the table, which leaves the other columns room to keep each number on one line.
    shared = [c for c in ("n (≠ 0, excl.)", "smallest p (reachable)") if out[c].nunique() == 1]
    lead = ("<p><small>Every test below: " + "; ".join(f"{html.escape(c)} {html.escape(out[c].iloc[0])}" for c in shared)
            + ".</small></p>\n") if shared else ""
    nowrap = ["a - b", "W", "p", "p (BY)", "r", "sig."]  # short numbers; "9.8e-04" broke at its hyphen
    table = (out.drop(columns=shared).style.format(escape="html").hide(axis="index")
             .set_table_attributes('class="kd-full-tests"')
             .set_properties(**{"font-size": "0.78em", "padding": "2px 4px"})
             .set_properties(subset=nowrap, **{"white-space": "nowrap"}).to_html())
    return lead + table


def breakable(names) -> list[str]:
    """Long entry ids ("digits-mlp-standard-s128") that may break after a hyphen in a narrow column, and
    nowhere else (HTML <wbr>)."""
    return [html.escape(str(n)).replace("-", "-<wbr>") for n in names]


def csv_link(df: pd.DataFrame, filename: str, text: str) -> str:
    """A link that downloads `df` as a CSV file; the data travel inside the page, so it works offline."""
    import base64

    data = base64.b64encode(df.to_csv(index=False).encode()).decode()
    return f'<a download="{html.escape(filename)}" href="data:text/csv;base64,{data}">{html.escape(text)}</a>'


def details(summary: str, body: str, raw_html: bool = False, anchor: str = "") -> str:
    """A collapsed block (one click away in the book); `body` is text unless `raw_html`; `anchor`: its HTML
    id, for links to it."""
    inner = body if raw_html else f"<p>{html.escape(body)}</p>"
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return f"<details{ident}><summary>{html.escape(summary)}</summary>\n{inner}\n</details>"


def chapter_href(scale: str, entry_id: str) -> str:
    """A setup chapter's page, relative to the book's own chapters (book/generated/)."""
    return f"{scale}/{entry_id}.html"


def entry_link(scale: str, entry_id: str, prefix: str = "") -> str:
    """An entry id (breakable) that links to its chapter; `prefix` is shown before it inside the link."""
    return f'<a href="{html.escape(chapter_href(scale, entry_id))}">{html.escape(prefix)}{breakable([entry_id])[0]}</a>'


def entry_pattern(entry_ids):
    """A regex whose group 1 is a whole mention of one of `entry_ids` (the longest id first, so
    digits-mlp-standard-T16 is not read as digits-mlp-standard; not inside a path or an anchor), or None
    when there are no ids."""
    import re

    ids = sorted({str(i) for i in entry_ids}, key=len, reverse=True)
    return re.compile(r"(?<![\w./#-])(" + "|".join(map(re.escape, ids)) + r")(?![\w-])") if ids else None


def link_entries(text_html: str, scale: str, entry_ids) -> str:
    """Every whole mention of one of `entry_ids` in an HTML text (`entry_pattern`) becomes a link to its
    chapter."""
    pattern = entry_pattern(entry_ids)
    return pattern.sub(lambda m: entry_link(scale, m.group(1)), text_html) if pattern else text_html
