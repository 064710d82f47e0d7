"""The JupyterLab explorer without a browser: arms grouped and labelled readably, the book's units and test
tables, a scale menu, legends beside the axes, and every widget change redraws the output."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from IPython.display import Markdown  # noqa: E402

from kdlib import load_study  # noqa: E402
from kdlib.executors import LocalExecutor  # noqa: E402
from kdlib.jobs import collect_jobs
from kdlib.book.explorer import Explorer, arm_groups, per_class_figure, per_class_values, per_seed_figure  # noqa: E402
from kdlib.book.frames import run_table
from kdlib.book.setup_analysis import plan_setups
from kdlib.results import ResultsFolder


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke plan's entry with every RCD noise and three KD weights, trained into a fresh store."""
    study = load_study()
    entry = next(e for e in study.plan("smoke") if e.id == "digits-mlp-rcd-variants")
    cfg = study.entry_setup("smoke", entry)
    root = tmp_path_factory.mktemp("explore") / "results"
    store = ResultsFolder(root).store()
    report = LocalExecutor("cpu").run(collect_jobs([(entry.id, cfg)]), store)
    assert not report.failed
    return {"study": study, "entry": entry.id, "cfg": cfg, "store": store, "root": root,
            "results": run_table(store, cfg)}


def test_arms_are_grouped_main_first_with_one_colour_and_label_each(smoke):
    cfg, groups = smoke["cfg"], arm_groups(smoke["results"], smoke["cfg"])
    assert [g.label for g in groups[:3]] == ["control", "kd", "rcd"]
    assert len(groups) == 1 + len(cfg.kd_weights) * (1 + len(cfg.noise_variants))
    assert len({g.label for g in groups}) == len(groups)
    assert len({g.colour for g in groups}) == len(groups)  # every RCD variant its own colour
    blocks = [g.block for g in groups]
    assert blocks == sorted(blocks, key=blocks.index)  # each block is contiguous


def test_per_seed_labels_never_overlap_and_values_are_percentages(smoke):
    groups = arm_groups(smoke["results"], smoke["cfg"])
    fig = per_seed_figure(smoke["results"], groups, "agreement")
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = [t.get_window_extent() for t in ax.get_yticklabels()]
    assert len(boxes) == len(groups)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert ax.get_xlabel() == "agreement with teacher (%)"
    assert max(abs(x) for c in ax.collections for x in c.get_offsets()[:, 0]) > 1.0  # points, not fractions
    assert ax.get_legend() is not None
    plt.close(fig)


def test_per_class_legend_sits_beside_the_bars(smoke):
    groups = arm_groups(smoke["results"], smoke["cfg"])[:3]
    key, table = per_class_values(smoke["store"], smoke["results"], groups, "accuracy")
    assert key == "accuracy" and list(table.columns) == ["control", "kd", "rcd"] and len(table) == 10
    fig = per_class_figure(table, groups, key)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    plt.close(fig)


def test_a_widget_change_redraws_the_output(smoke, monkeypatch):
    ex = Explorer(scale="smoke", results_dir=str(smoke["root"]))
    assert "smoke" in ex.scale_w.options
    ex.entry_w.value = smoke["entry"]
    assert ex.arms_w.options[:3] == ("control", "kd", "rcd")
    first = ex.render()
    fig = first[0]
    assert isinstance(fig, plt.Figure) and fig.axes[0].get_xlabel() == "agreement with teacher (%)"
    # the book's test table: the primary family is called primary, with the book's labelled columns
    text = " ".join(i.data for i in first if isinstance(i, Markdown))
    assert "Primary tests" in text
    html = first[2].to_html()
    assert "p (BY)" in html and "kd > control" in html and "agreement" in html

    calls = []
    monkeypatch.setattr(ex, "render", lambda: calls.append(ex.metric_w.value) or ["redrawn"])
    ex.metric_w.value = "accuracy"
    ex.view_w.value = "per class"
    ex.arms_w.value = ("kd",)
    assert calls == ["accuracy", "accuracy", "accuracy"]
    monkeypatch.undo()
    ex.arms_w.value = ()
    assert ex.render() == ["No arm selected: pick at least one arm."]
    plt.close("all")


def test_the_scale_menu_lists_scales_with_runs():
    study = load_study()
    ex = Explorer(study_file=None)
    shipped = [s for s in ("mid",) if ResultsFolder.of(study, s).existing_store() is not None]
    assert set(shipped) <= set(ex.scale_w.options)
    if "mid" in ex.scale_w.options:
        ex.scale_w.value = "mid"
        assert ex.entry_w.value in [e.id for e in study.plan("mid")]
        assert ex.arms_w.options  # the shipped runs are read
    plt.close("all")


def test_a_scale_change_never_sends_the_browser_an_index_its_options_lack(smoke):
    """The browser applies each state message in turn: options sent apart from their index left the entry
    menu selecting an option the new list lacks ("Cannot set properties of undefined (setting 'selected')"
    in JupyterLab). Here every message the menus send is applied to a model of the browser's state, and
    after each one the index must name an existing option. Also: every scale opens on an entry with runs,
    listed by title."""
    study = load_study()
    ex = Explorer(scale="smoke", results_dir=str(smoke["root"]))
    browser, bad = {}, []
    for name in ("entry_w", "arms_w"):
        widget = getattr(ex, name)
        browser[name] = {"_options_labels": widget._options_labels, "index": widget.index}

        def send(msg, buffers=None, name=name):
            state = browser[name]
            state.update(msg["state"])
            index = state["index"]
            indices = index if isinstance(index, tuple) else () if index is None else (index,)
            if any(i >= len(state["_options_labels"]) for i in indices):
                bad.append((name, dict(msg["state"])))

        widget._send = send
    scales = [s for s in ex.scale_w.options if s != "smoke"]
    assert scales, "no shipped scale to change to"
    for s in scales + ["smoke"]:
        ex.scale_w.value = s
        store = ex.store()
        cfg = dict(plan_setups(study, s))[ex.entry_w.value]
        assert any(store.has(r) for r in cfg.runs()), f"{s} opens on {ex.entry_w.value}, which has no runs"
        titles = {e.id: e.title or e.id for e in study.plan(s)}
        assert ex.entry_w.label == titles[ex.entry_w.value]
    assert not bad, bad
    plt.close("all")
