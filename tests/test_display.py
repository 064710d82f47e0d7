"""What a reader sees in the book's tables and figures: p-values never rounded to 0, rows named in words,
undefined cells explained, tables narrow enough for the text column, labels that do not overlap, each
inline script once per page."""
import base64

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kdlib.book import formatting as show  # noqa: E402
from kdlib.book import figures as plots  # noqa: E402
from kdlib.book.sphinx_assets import unique_scripts  # noqa: E402
from kdlib.book.evidence import BookEvidence  # noqa: E402


def test_p_values_keep_two_significant_figures():
    assert show.fmt_p(0.0018) == "0.0018"
    assert show.fmt_p(0.046875) == "0.047"
    assert show.fmt_p(0.00049) == "4.9e-04"
    assert show.fmt_p(float("nan")) == "n/a"


def test_readings_table_shows_the_p_value_not_zero():
    df = pd.DataFrame({"kd_weight": [0.9, 0.9], "arm": ["kd", "rcd"], "accuracy": [93.9, 56.8],
                       "kd_gt_control_agreement_p_by": [0.0018, float("nan")]})
    html = show.readings_table(df).to_html()
    assert "0.0018" in html and "0.00<" not in html
    assert ">93.90<" in html and ">0.9<" in html and "93.900000" not in html


def test_variant_rows_are_named_in_words():
    idx = pd.MultiIndex.from_tuples([("control", "-"), ("kd", "-"), ("rcd", "permuted")], names=["arm", "rcd_noise"])
    html = show.variants_table(pd.DataFrame({"accuracy": [90.0, 91.0, 80.0]}, index=idx)).to_html()
    assert "rcd: permuted" in html and "('rcd'" not in html


def test_transfer_table_says_why_a_cell_is_undefined():
    t = pd.DataFrame({"control": [50.0, 0.0, float("nan"), 1234.0], "kd": [52.0, 2.0, float("nan"), 1234.4]},
                     index=["neg_agreement", "neg_gain_points", "neg_gain_relative", "teacher_wrong"])
    shown = show.transfer_table(t)
    assert "nan" not in shown.to_string().lower()
    assert shown.loc[show.label("neg_gain_points"), "control"] == "-"  # the reference
    assert shown.loc[show.label("neg_gain_relative"), "kd"] == "n/a"
    assert shown.loc[show.label("teacher_wrong"), "kd"] == "1,234"
    assert "undefined" in show.undefined_note(t)


def test_csv_link_carries_the_table():
    df = pd.DataFrame({"entry": ["a", "b"], "seconds": [1.5, 2.0]})
    link = show.csv_link(df, "runs.csv", "download")
    data = link.split("base64,")[1].split('"')[0]
    assert base64.b64decode(data).decode().splitlines() == ["entry,seconds", "a,1.5", "b,2.0"]


def test_duplicate_inline_scripts_are_dropped():
    from sphinx.builders.html._assets import _JavaScript

    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("a.js"), _JavaScript(None, body=thebe), _JavaScript("", body=thebe), _JavaScript("a.js"),
               _JavaScript("b.js", **{"async": "async"})]
    assert [(s.filename, s.attributes) for s in unique_scripts(scripts)] == [
        ("a.js", {}), (None, {"body": thebe}), ("b.js", {"async": "async"})]


def _summary(n=3):
    ids = [f"digits-mlp-standard-s{k}" for k in range(n)]
    f = np.linspace(0.1, 0.9, n)
    return pd.DataFrame({
        "id": ids, "scale": "cpu", "modality": "image", "n_seeds": 10, "teacher_accuracy": f, "teacher_train_accuracy": f,
        "teacher_errors": 100.0, "control_accuracy": f, "kd_accuracy": f, "rcd_accuracy": f,
        "agreement_gain_points": f, "agreement_share_closed": [0.05, float("nan"), 0.2][:n], "agreement_p_by": [0.0018, 0.5, 1.0][:n], "significant_transfer": [True, False, False][:n],
        "transfer_testable": True, "asymmetry_seeds": 10, "pos_gain_points": f, "neg_gain_points": f, "pos_headroom": f, "neg_headroom": f,
        "pos_share_closed": f, "neg_share_closed": [0.1, float("nan"), 0.3][:n], "asymmetry_p": f,
        "rcd_kd_accuracy_diff": f, "rcd_kd_equivalence_p": f})


def test_summary_tables_are_narrow_and_name_the_seed_count_once():
    s = _summary()
    over, tr = BookEvidence.overview(s), BookEvidence.transfer(s)
    assert len(over.data.columns) <= 8 and len(tr.data.columns) <= 8
    assert "seeds" not in over.data.columns and any("10 seeds" in c for c in over.data.columns)
    html = over.to_html()
    assert "0.0018" in html and "digits-<wbr>mlp" in html  # long ids may break at hyphens only
    assert "+0.10 (5 %)" in html and "+0.50 (n/a)" in html  # the gain beside the share of headroom it closes
    assert "nan" not in tr.to_html().lower() and "n/a" in tr.to_html()


def test_per_seed_tab_tables_use_the_books_labels_and_units():
    d = pd.DataFrame({"seed": [0, 1], "accuracy": [0.9, 0.8], "cka": [0.5, 0.6], "seconds": [1.0, 2.0]})
    t = plots.per_seed_table(d, ["accuracy", "cka"])
    assert list(t.columns) == ["seed", "accuracy (%)", "CKA", "time (s)"]
    assert t["accuracy (%)"].tolist() == [90.0, 80.0]


def _weight_results():
    rng = np.random.default_rng(0)
    rows = []
    for s in range(6):
        rows.append({"arm": "control", "seed": s, "kd_weight": np.nan, "rcd_noise": None, "accuracy": 0.9 + 0.001 * s,
                     "agreement": 0.9})
        for w in (0.1, 0.5, 0.9):
            rows.append({"arm": "kd", "seed": s, "kd_weight": w, "rcd_noise": None, "accuracy": 0.9 + 0.001 * s,
                         "agreement": 0.92})
            rows.append({"arm": "rcd", "seed": s, "kd_weight": w, "rcd_noise": "unit_fixed",
                         "accuracy": 0.9 + 0.001 * s + (0.0135 if w == 0.1 else -0.3) + rng.normal(0, 0.001),
                         "agreement": 0.5})
    return pd.DataFrame(rows)


def test_weight_figure_shows_the_paired_differences_with_intervals():
    r = _weight_results()
    d = plots.paired_differences(r)
    small = d[(d.difference == "rcd: unit_fixed - kd") & (d.kd_weight == 0.1)].iloc[0]
    assert abs(small["mean"] - 1.35) < 0.1 and 0 < small["half_width"] < 0.5  # the flip of claim 4 is visible
    fig = plots.weight_curve_figure(r)
    assert len(fig.axes) == 3 and all(ax.get_legend() is not None for ax in fig.axes)
    assert "difference" in fig.axes[2].get_ylabel()
    plt.close(fig)


def test_asymmetry_labels_do_not_print_over_each_other():
    s = _summary(3)
    s["pos_share_closed"] = [0.2, 0.2001, 0.5]
    s["neg_share_closed"] = [0.3, 0.3001, 0.1]
    fig = plots.asymmetry_by_setup(s)
    fig.canvas.draw()
    ax = fig.axes[0]
    notes = [t for t in ax.texts if t.get_text() and "\n" not in t.get_text()]
    assert sorted(t.get_text() for t in notes) == ["1, 2", "3"]  # coinciding points share one label
    boxes = [t.get_window_extent() for t in notes]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_an_outlying_share_does_not_set_the_asymmetry_axes():
    """One setup whose control had almost no headroom (a share of -31) would squeeze the others into a
    corner: it is drawn at the edge and its value given in the key."""
    s = _summary(3)
    s["pos_share_closed"] = [0.2, -31.0, 0.5]
    s["neg_share_closed"] = [0.3, 0.4, 0.1]
    fig = plots.asymmetry_by_setup(s)
    ax, key_ax = fig.axes
    assert ax.get_xlim()[0] > -2 and ax.get_xlim()[1] < 1
    key = key_ax.texts[0].get_text().splitlines()
    assert key[1].endswith("(A+ -31, A- 0.4)") and "(A+" not in key[0] + key[2]
    assert "beyond" in ax.get_title()
    plt.close(fig)
    s["pos_share_closed"] = [0.2, -0.1, 0.5]  # nothing beyond the limit: no value in the key, no note in the title
    fig = plots.asymmetry_by_setup(s)
    assert "(A+" not in fig.axes[1].texts[0].get_text() and "beyond" not in fig.axes[0].get_title()
    plt.close(fig)


def _asymmetry_labels(s):
    """The drawn asymmetry chart's labels: (box, the setup numbers it names), and each point in pixels."""
    fig = plots.asymmetry_by_setup(s)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [(t.get_window_extent(), [int(n) for n in t.get_text().replace("\n", " ").replace(",", " ").split()])
              for t in ax.texts if t.get_text()]
    xy = ax.transData.transform(np.column_stack([s["pos_share_closed"], s["neg_share_closed"]]))
    return fig, labels, xy


def _px_from_box(box, p):
    return float(np.hypot(max(box.x0 - p[0], 0, p[0] - box.x1), max(box.y0 - p[1], 0, p[1] - box.y1)))


def _crowd(seed: int) -> pd.DataFrame:
    """30 setups in a small corner of the asymmetry chart (as at the cpu and mid scales)."""
    s = pd.concat([_summary(3)] * 10, ignore_index=True)
    s["id"] = [f"setup-{k}" for k in range(len(s))]
    rng = np.random.default_rng(seed)
    s["pos_share_closed"], s["neg_share_closed"] = rng.uniform(0, 0.3, len(s)), rng.uniform(0, 0.3, len(s))
    s.loc[0, "pos_share_closed"] = 0.9  # one far point keeps the crowd small in the axes
    return s


def test_asymmetry_labels_of_many_crowded_points_never_overlap():
    """30 setups in a small corner (as at the cpu and mid scales): labels move to a free side of their point
    and merge only where no side is free, so none prints over another, every setup's number appears exactly
    once, and every point lies beside the label that names it (merged labels used to sit at the first point
    of the merged groups, up to 111 px from the others)."""
    for seed in range(3):
        s = _crowd(seed)
        fig, labels, xy = _asymmetry_labels(s)
        boxes = [b for b, _ in labels]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        assert sorted(n for _, ns in labels for n in ns) == list(range(1, len(s) + 1))
        far = max(_px_from_box(b, xy[n - 1]) for b, ns in labels for n in ns)
        assert far <= 40, (seed, far)
        plt.close(fig)


def test_an_asymmetry_label_leaves_a_neighbouring_point_uncovered_where_another_side_is_free():
    """Points in a rising row, each just up and to the right of the last but too far apart to share a label:
    the first place tried (up-right) would print each label over the next point; another side is free."""
    s = _summary(3)
    s["pos_share_closed"], s["neg_share_closed"] = [0.30, 0.325, 0.35], [0.30, 0.32, 0.34]
    fig, labels, xy = _asymmetry_labels(s)
    ax = fig.axes[0]
    r = np.sqrt(plots.MARKER_AREA) * fig.dpi / 72 / 2
    first = ax.annotate("1", tuple(s.loc[0, ["pos_share_closed", "neg_share_closed"]]), xytext=(7, 5),
                        textcoords="offset points", va="bottom").get_window_extent(fig.canvas.get_renderer())
    assert _px_from_box(first, xy[1]) < r  # the premise: the first place tried covers the next point
    assert sorted(ns for _, ns in labels) == [[1], [2], [3]]  # no merge was needed
    for box, (n,) in labels:
        assert _px_from_box(box, xy[n - 1]) < 15  # beside its own point
        assert all(_px_from_box(box, xy[k]) >= r for k in range(3) if k != n - 1)  # clear of the others
    plt.close(fig)


def test_an_asymmetry_label_pushed_nearer_another_point_is_led_to_its_own():
    """In a crowd a label may end up nearer a point it does not name than any it names: then (and only then)
    a hairline runs from the label's edge to the point it names, so the reader need not guess."""
    s = _crowd(0)
    fig, labels, xy = _asymmetry_labels(s)
    ax = fig.axes[0]
    leaders = [ax.transData.transform(line.get_xydata()) for line in ax.lines
               if line.get_gid() == "asymmetry-leader"]
    stray = 0
    for box, ns in labels:
        own = [n - 1 for n in ns]
        led = [ends for ends in leaders if _px_from_box(box, ends[0]) < 1
               and min(np.hypot(*(xy[own] - ends[1]).T)) < 1]  # from this box's edge to a point it names
        to_own = min(_px_from_box(box, xy[k]) for k in own)
        if min(_px_from_box(box, xy[k]) for k in range(len(s)) if k not in own) < to_own:
            stray += 1
            assert len(led) == 1, ns
        else:
            assert not led, ns
    assert 0 < stray < len(labels) and len(leaders) == stray  # the premise: both kinds occur
    plt.close(fig)
