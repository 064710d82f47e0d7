"""End to end: the driver on the smoke plan trains, executes the chapters, generates _toc.yml and builds
the book; the book shows only chapters executed for its own configuration, a failed chapter never
replaces a good one, and headless Chromium opens built pages as a reader would."""
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from kdlib import load_study
from kdlib.book.build import chapter_metadata, execute_chapter
from kdlib.driver import main as driver_main
from kdlib.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    assert driver_main(["--scale", "smoke", "--out", str(out), "--results", str(out / "results")]) == 0
    return out


def _stream_text(nb) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                   for c in nb.cells for o in c.get("outputs", []))


def test_driver_generates_toc_and_executed_chapters(book):
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    plan = load_study().plan("smoke")
    setup_files = [c["file"] for c in toc["parts"][1]["chapters"]]
    assert setup_files == [f"book/generated/smoke/{e.id}" for e in plan]
    assert (book / "_build" / "html" / "book" / "generated" / "claims.html").is_file()
    nb = nbformat.read(book / "book" / "generated" / "smoke" / f"{plan[0].id}.ipynb", as_version=4)
    assert nb.cells[0].source.startswith("# ")
    assert nb.metadata["kdlib"]["scale"] == "smoke" and nb.metadata["kdlib"]["results_dir"] == "results"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("remove-cell" in c.metadata["tags"] for c in injected)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    assert (book / "results" / "training_log.json").is_file()
    assert "train_missing = False" in injected[0].source  # the training phase trained; a chapter never does


def test_rerun_trains_nothing(book, capsys):
    driver_main(["--scale", "smoke", "--out", str(book), "--results", str(book / "results"),
                 "--only", "vowels-seqcnn-self", "--no-build"])
    out = capsys.readouterr().out
    assert "0 to train" in out
    nb = nbformat.read(book / "book" / "generated" / "smoke" / "vowels-seqcnn-self.ipynb", as_version=4)
    assert "runs from" in _stream_text(nb) and "This chapter trained" not in _stream_text(nb)
    # nothing it reads changed since the fixture's build: no chapter ran its kernel again
    log = json.loads((book / "results" / "driver_log.json").read_text())
    assert set(log["reused_chapters"]) == set(log["chapters_seconds"]) and "smoke/vowels-seqcnn-self" in log["reused_chapters"]


def test_only_keeps_the_whole_plan_in_the_toc(book):
    driver_main(["--scale", "smoke", "--out", str(book), "--results", str(book / "results"),
                 "--only", "imdb-textcnn-self", "--no-build"])
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    assert len(toc["parts"][1]["chapters"]) == len(load_study().plan("smoke"))


def test_chapters_of_another_results_folder_are_left_out(book, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(book / "book", other / "book")
    shutil.copy(book / "_config.yml", other / "_config.yml")
    assert driver_main(["--scale", "smoke", "--out", str(other), "--results", str(tmp_path / "fresh"),
                        "--only", "vowels-seqcnn-self", "--no-build"]) == 0
    toc = yaml.safe_load((other / "_toc.yml").read_text())
    files = [c["file"] for c in toc["parts"][1]["chapters"]]
    assert files == ["book/generated/smoke/vowels-seqcnn-self"]  # the others were executed against another store


def test_a_failed_chapter_does_not_replace_the_good_one(book):
    path = book / "book" / "generated" / "smoke" / "imdb-textcnn-self.ipynb"
    before = path.read_bytes()
    with pytest.raises(Exception):
        execute_chapter("setup", path, {"setup": "no-such-setup", "scale": "smoke"}, "x", {"scale": "smoke"})
    assert path.read_bytes() == before and chapter_metadata(path)["entry"] == "imdb-textcnn-self"
    assert not list(path.parent.glob(".*.tmp.ipynb"))


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra}


def test_sigterm_during_chapters_then_a_rebuild_shows_only_what_the_store_holds(book):
    """SIGTERM (timeout, Slurm) in the chapters leaves no temporary notebook; one left by kill -9 is
    removed at the next start; a kept chapter whose run was deleted is executed again; pages of chapters
    no longer in the TOC leave _build/html."""
    gen = book / "book" / "generated" / "smoke"
    argv = ["--scale", "smoke", "--out", str(book), "--results", str(book / "results"), "--only", "vowels-seqcnn-self"]
    cfg = load_study().setup("imdb-textcnn-self", "smoke")
    RunStore(book / "results" / "runs").discard(cfg.run_config("kd", 1))  # the store changed: chapters execute
    proc = subprocess.Popen([sys.executable, "-m", "kdlib.driver", *argv, "--no-build"], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list(gen.glob(".*.tmp.ipynb")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert list(gen.glob(".*.tmp.ipynb")), "no chapter started"
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130 and "interrupted" in out and "Traceback" not in out
    assert not list(gen.glob(".*.tmp.ipynb"))
    (gen / ".imdb-textcnn-self.999999999.tmp.ipynb").write_text("{}")  # what kill -9 leaves
    stray = book / "_build" / "html" / "book" / "generated" / "smoke" / "dropped-entry.html"
    stray.write_text("a chapter no longer in the plan")
    assert driver_main(argv) == 0
    assert not list(gen.glob(".*.tmp.ipynb")) and not stray.exists()
    nb = nbformat.read(gen / "imdb-textcnn-self.ipynb", as_version=4)
    assert f"1 of {len(cfg.runs())} runs are missing" in _stream_text(nb)
    assert "smoke/imdb-textcnn-self" not in json.loads((book / "results" / "driver_log.json").read_text())["reused_chapters"]
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    assert "book/generated/smoke/imdb-textcnn-self" in [c["file"] for c in toc["parts"][1]["chapters"]]


def test_a_read_only_complete_store_builds_the_book(book, tmp_path, monkeypatch):
    """Only the training phase writes into the results folder. Writes under it raise EROFS here and in the
    chapters' kernels (tests/readonly/sitecustomize.py: as root, chmod would not stop them)."""
    import importlib.util

    readonly = ROOT / "tests" / "readonly"
    spec = importlib.util.spec_from_file_location("kdlib_test_readonly", readonly / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    other = tmp_path / "other"
    shutil.copytree(book / "book", other / "book")
    monkeypatch.setenv("KDLIB_TEST_READONLY", str(book / "results"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(readonly), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    module.install(str(book / "results"), setattr=monkeypatch.setattr)
    with pytest.raises(OSError, match="Read-only"):
        (book / "results" / "probe").write_text("")
    assert driver_main(["--scale", "smoke", "--out", str(other), "--results", str(book / "results"),
                        "--only", "vowels-seqcnn-self", "--rerun-chapters"]) == 0  # kernels that read, not reused pages
    assert (other / "_build" / "html" / "book" / "generated" / "smoke" / "vowels-seqcnn-self.html").is_file()


def test_a_chapter_never_retrains_a_run_that_failed_in_the_training_phase(book, tmp_path, monkeypatch):
    from kdlib.book.setup_chapter import ChapterSetup, SetupView
    from kdlib.executors import LocalExecutor, fill_missing
    from kdlib.jobs import Report

    results = tmp_path / "results"
    shutil.copytree(book / "results", results)
    cfg = load_study().setup("vowels-seqcnn-self", "smoke")
    failed = cfg.run_config("rcd", 1)
    RunStore(results / "runs").discard(failed)
    (results / "failed_runs.json").write_text(json.dumps({failed.label: "RuntimeError: diverged"}))
    asked = []
    monkeypatch.setattr(LocalExecutor, "run", lambda self, jobs, store: asked.extend(jobs) or Report())
    chapter = ChapterSetup.from_parameters({"setup": "vowels-seqcnn-self", "scale": "smoke", "results_dir": str(results)})
    fill_missing(chapter.entry_id, chapter.cfg, chapter.results, "cpu")
    view = SetupView.read(chapter)
    assert failed.label not in [j.cfg.label for j in asked]
    assert view.missing == [failed.label] and "diverged" in view.failed[failed.label]


def test_ctrl_c_stops_with_one_line(monkeypatch, capsys):
    import kdlib.driver as drv

    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(drv, "run", interrupted)
    assert drv.main([]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted") and "Traceback" not in err[0]


def test_explorer_executes_and_handles_no_arm(book):
    import papermill as pm

    from kdlib.book.notebooks import to_ipynb

    src = to_ipynb(ROOT / "notebooks" / "explorer.py", book / "explorer.ipynb")
    nb = nbformat.read(src, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("explorer.arms_w.value = ()  # a reader deselects every arm"))
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(book / "explorer-out.ipynb"), kernel_name="python3", progress_bar=False,
                        parameters={"scale": "smoke", "results_dir": str(book / "results")}, cwd=str(ROOT))
    nb = nbformat.read(book / "explorer-out.ipynb", as_version=4)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    # the Output widget's state (saved with the notebook) holds the empty-state message, not a traceback
    state = json.dumps(nb.metadata.get("widgets", {}))
    assert "No arm selected" in state and "AttributeError" not in state


# Elements wider than the text column (its content box), outside collapsed <details>: tables, figures,
# plotly charts, widget tabs; and tables wider than the box that holds them (a widget tab, a scrolling
# wrapper), whose right edge a reader would not see.
OVERFLOW_JS = """() => {
  const col = document.querySelector('.bd-article');
  if (!col) return [];
  const box = col.getBoundingClientRect(), style = getComputedStyle(col);
  const right = box.right - parseFloat(style.paddingRight);
  return Array.from(col.querySelectorAll('table, img, .js-plotly-plot, .widget-tab'))
    .filter(e => e.getClientRects().length && !(e.closest('details') && !e.closest('details').open))
    .map(e => ({what: e.tagName + ' ' + (e.innerText || e.src || '').slice(0, 40).replace(/\\s+/g, ' '),
                over: Math.round(e.getBoundingClientRect().right - right)}))
    .filter(x => x.over > 1)
    .concat(Array.from(col.querySelectorAll('table'))
      .filter(t => t.getClientRects().length && !t.closest('details'))
      .map(t => ({what: 'TABLE in its box ' + t.innerText.slice(0, 40).replace(/\\s+/g, ' '),
                  over: Math.round(t.getBoundingClientRect().width - t.parentElement.clientWidth)}))
      .filter(x => x.over > 1));
}"""


def _serve(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _book_pages(book: Path) -> list[str]:
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f + ".html" for f in files]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (run.sh test installs it as root)")
def test_pages_render_offline_in_chromium(book):
    from playwright.sync_api import sync_playwright

    server, base = _serve(book / "_build" / "html")
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    requests, errors = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            entry = load_study().plan("smoke")[1].id
            page.goto(f"{base}/book/generated/smoke/{entry}.html", wait_until="networkidle")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20000)
            page.wait_for_selector(".widget-tab, .jupyter-widget-Tab, .lm-TabBar", timeout=20000)
            assert page.evaluate("Array.from(document.images).filter(i => i.src.endsWith('.png'))"
                                 ".every(i => i.complete && i.naturalWidth > 0)")
            assert page.evaluate("document.querySelectorAll('img[src$=\".png\"]').length") >= 5
            body = page.inner_text("body")
            assert "p (BY)" in body and "Primary tests" in body and page.locator("table").count() >= 6
            page.screenshot(path=str(shots / "setup-page.png"), full_page=False)
            page.goto(f"{base}/book/methods.html", wait_until="networkidle")
            page.wait_for_selector("mjx-container", timeout=20000)  # MathJax from the vendored copy
            page.goto(f"{base}/book/generated/claims.html", wait_until="networkidle")
            assert "not testable at this seed count" in page.inner_text("body")
            # the verdict table first: it starts within the first 900 px, the rules folded below it
            top = page.evaluate("document.querySelector('article table, main table').getBoundingClientRect().top + window.scrollY")
            assert top < 900, f"the claims page's verdict table starts at {top:.0f} px"
            assert page.locator("details summary", has_text="The rules, in short").count() == 1
            # a verdict's link opens its evidence block on arrival, below the sticky header
            link = page.locator("table a[href^='#']").first
            target = link.get_attribute("href")[1:]
            link.click()
            page.wait_for_function(f"document.getElementById({target!r}).open === true", timeout=30000)
            assert page.evaluate(f"document.getElementById({target!r}).getBoundingClientRect().top") >= 60
            page.screenshot(path=str(shots / "claims-page.png"))
            # the landing page opens on the answer: the findings box and the headline figure in the first 900 px
            page.goto(f"{base}/book/intro.html", wait_until="networkidle")
            box = page.locator(".admonition", has_text="The answer, computed from this build")  # (smart quotes after)
            assert box.count() == 1 and box.bounding_box()["y"] < 900
            fig = page.locator("img[src$='findings.png']")
            assert fig.count() == 1 and fig.bounding_box()["y"] < 900 and page.evaluate(
                "document.querySelector(\"img[src$='findings.png']\").naturalWidth") > 0
            page.screenshot(path=str(shots / "landing-page.png"))
            browser.close()
    finally:
        server.shutdown()
    outside = [u for u in requests if not u.startswith(base) and not u.startswith("data:") and not u.startswith("blob:")]
    assert not outside, f"pages fetched from the network: {outside[:5]}"
    assert not [e for e in errors if "Plotly" in e or "require" in e], errors


def test_setup_view_reports_the_debiased_cka_and_the_mi_bias_from_stored_outputs(book):
    from kdlib.book.setup_analysis import fmt_mean_sem
    from kdlib.metrics import debiased_cka, mi_plugin_bias
    from kdlib.book.setup_chapter import SetupView

    view = SetupView.from_parameters({"setup": "vowels-seqcnn-self", "scale": "smoke", "results_dir": str(book / "results"),
                                      "train_missing": False})
    table = view.similarity_table()
    kd = view.main[view.main.arm == "kd"]
    want = [debiased_cka(view.store.features(h), view.store.features(t)) for h, t in zip(kd["hash"], kd["teacher_hash"])]
    assert table.loc["cka_debiased", "kd"] == fmt_mean_sem(want) and table.loc["cka", "kd"] == fmt_mean_sem(kd["cka"])
    logits = view.store.test_logits(kd["teacher_hash"].iloc[0])
    assert table.loc["mi_plugin_bias", "kd"] == f"{mi_plugin_bias(logits.shape[1], logits.shape[1], len(logits)):.3g}"
    # the baselines CKA is read against, measured on the stored features
    from kdlib.metrics import linear_cka

    teachers = view.main[view.main.arm == "teacher"].sort_values("seed")["hash"].tolist()
    pair = linear_cka(view.store.features(teachers[0]), view.store.features(teachers[1]))
    assert table.loc["cka", "teacher vs another seed's teacher"] == fmt_mean_sem([pair])
    null = []
    for _, c in view.main[view.main.arm == "control"].iterrows():
        fs = view.store.features(c["hash"])
        null.append(linear_cka(fs[np.random.default_rng(0).permutation(len(fs))], view.store.features(c["teacher_hash"])))
    assert table.loc["cka", "control, rows permuted (null)"] == fmt_mean_sem(null)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (run.sh test installs it as root)")
@pytest.mark.parametrize("width", [1000, 1400])
def test_every_page_is_clean_and_fits_its_column(book, width):
    """Every page of the book as a reader meets it: no console error or page error, no failed request
    (vendored fonts and scripts all found), nothing wider than the text column."""
    from playwright.sync_api import sync_playwright

    server, base = _serve(book / "_build" / "html")
    problems = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            for path in _book_pages(book):
                page = browser.new_page(viewport={"width": width, "height": 1200})
                seen = []
                page.on("pageerror", lambda e: seen.append(f"page error: {e}"))
                # Chromium sometimes asks for /favicon.ico despite the page's icon link: the browser's, not the book's
                page.on("requestfailed", lambda r: seen.append(f"failed request: {r.url}")
                        if not r.url.endswith("/favicon.ico") else None)
                page.on("response", lambda r: seen.append(f"HTTP {r.status}: {r.url}")
                        if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
                page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}")
                        if m.type == "error" and "favicon.ico" not in str(m.location.get("url")) else None)
                page.goto(f"{base}/{path}", wait_until="networkidle")
                page.wait_for_timeout(300)  # widgets render after the load event
                wide = page.evaluate(OVERFLOW_JS)
                for tab in page.locator(".lm-TabBar-tab").all():  # every tab of the per-seed tables, in turn
                    tab.click()
                    wide += page.evaluate(OVERFLOW_JS)
                # folded blocks as a reader opens them (the full table of tests, evidence, rules) fit as well
                page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
                wide += page.evaluate(OVERFLOW_JS)
                seen += sorted({f"wider than the column by {x['over']} px: {x['what']}" for x in wide})
                problems += [f"{path} @ {width} px: {s}" for s in seen]
                page.close()
            browser.close()
    finally:
        server.shutdown()
    assert not problems, "\n".join(problems)


def test_the_built_book_names_no_path_of_this_machine_and_every_csv_link_resolves(book):
    """Neither the built pages nor their _sources (the executed notebooks, papermill's metadata) hold the
    book's folder, the repository's or a temporary folder; each CSV link holds a readable table (or names
    a file that exists)."""
    import base64
    import csv
    import io
    import re
    import tempfile

    html = book / "_build" / "html"
    machine = {str(book), str(book.resolve()), str(ROOT), tempfile.gettempdir().rstrip("/") + "/"}
    found, links = [], 0
    for f in sorted(html.rglob("*")):
        if not f.is_file() or f.suffix not in {".html", ".ipynb", ".md", ".js", ".txt", ".py"}:
            continue
        text = f.read_text(errors="replace")
        found += [f"{f.relative_to(html)}: {p}" for p in machine if p in text]
        if f.suffix != ".html":
            continue
        for href in re.findall(r'href="([^"]+\.csv|data:text/csv;base64,[^"]+)"', text):
            links += 1
            if href.startswith("data:"):
                rows = list(csv.reader(io.StringIO(base64.b64decode(href.split(",", 1)[1]).decode())))
                assert len(rows) >= 2 and len(rows[0]) >= 3, f"{f.name}: an empty CSV link"
            else:
                assert (f.parent / href).resolve().is_file(), f"{f.name}: {href} does not resolve"
    assert not found, "machine paths in the built book:\n" + "\n".join(found[:20])
    assert links >= len(load_study().plan("smoke")) + 1  # one per chapter and the appendix's


def test_every_kind_of_figure_keeps_its_text_legible_in_the_column(book):
    """Each figure the book draws, from this smoke build's runs and the shipped scales' (the summary's charts
    have one row per setup of every scale), shows no text below 10 px once fitted to the text column of a
    1000 px window. A figure that grows in width with the number of setups fails here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kdlib.book import explorer as ex
    from kdlib.book import figures, findings, objective_table, regime
    from kdlib.book.evidence import BookEvidence
    from kdlib.book.setup_chapter import SetupView

    study = load_study()
    results = str(book / "results")
    evidence = BookEvidence.load(str(study.path), "smoke", results, study.shipped_scales("smoke"))
    import pandas as pd

    one = evidence.all_main()
    # the book's summary has a row per setup of every scale (30 at the cpu scale with the shipped ones): the
    # smoke setups six times over, under other names, are that wide case
    allmain = pd.concat([one.assign(id=[f"mid: {i}-copy{k}" for i in one["id"]]) for k in range(6)], ignore_index=True)
    view = SetupView.from_parameters({"setup": "vowels-seqcnn-self", "scale": "smoke", "results_dir": results,
                                      "train_missing": False})
    main = view.main
    explorer = ex.Explorer(scale="smoke", results_dir=results)
    _, runs, groups = explorer._entry()
    key, per_class = ex.per_class_values(explorer.store(), runs, groups, "accuracy")
    curve = evidence.weight_curve_results()
    regime_rows = regime.regime_rows(evidence)
    objectives = objective_table.objective_rows(evidence)
    makers = {
        "per_seed": lambda: figures.per_seed_figure(main),
        "transfer": lambda: figures.transfer_figure(main),
        "headroom": lambda: figures.headroom_figure(main, view.cfg.min_disagreements),
        "gap": lambda: figures.gap_figure(main),
        "loss_curves": lambda: figures.loss_curves(main, view.epoch_logs()),
        "rcd_variants": lambda: figures.rcd_variants_figure(view.main_weight_runs),
        "gain_by_setup": lambda: figures.gain_by_setup(allmain),
        "asymmetry_by_setup": lambda: figures.asymmetry_by_setup(allmain),
        "accuracy_by_setup": lambda: figures.accuracy_by_setup(allmain),
        "findings": lambda: findings.figure(findings.headline_rows(evidence)),
        "regime": lambda: regime.figure(regime_rows, "Independent setups"),
        "explorer per seed": lambda: ex.per_seed_figure(runs, groups, "agreement"),
        "explorer per class": lambda: ex.per_class_figure(per_class, groups, key),
    }
    if curve is not None:
        makers["weight_curve"] = lambda: figures.weight_curve_figure(curve)
    if len(objectives):
        makers["objectives"] = lambda: objective_table.figure(objectives)
    small = {}
    with plt.rc_context(figures.STYLE):
        for name, make in makers.items():
            fig = make()
            if fig is None:  # a figure drawn with plt.show() inside
                fig = plt.gcf()
            found = figures.small_text(fig)
            if found:
                small[name] = found[:4]
            plt.close("all")
    assert not small, small
    # the check itself: the old width rule of the gain chart (0.55 in per setup) is caught
    with plt.rc_context(figures.STYLE):
        fig, ax = plt.subplots(figsize=(0.55 * len(allmain) + 2, 3.8))
        ax.bar(allmain["id"], allmain["agreement_gain_points"])
        assert figures.small_text(fig)
        plt.close(fig)


def test_built_links_resolve_to_pages_and_anchors(book):
    """Every relative link of the built book (setup names in the claims, summary and regime tables, each
    chapter's links back to the verdicts that use it) reaches a page, and its #anchor an element there."""
    import re
    from urllib.parse import unquote, urlsplit

    html = book / "_build" / "html"
    ids: dict = {}

    def anchors(page: Path) -> set:
        if page not in ids:
            ids[page] = set(re.findall(r'\bid="([^"]+)"', page.read_text(errors="replace")))
        return ids[page]

    broken, backlinks = [], 0
    for f in sorted(html.rglob("*.html")):
        if "_static" in f.relative_to(html).parts:  # the theme's templates, not pages
            continue
        text = f.read_text(errors="replace")
        for href in re.findall(r'href="([^"]+)"', text):
            parts = urlsplit(href)
            if parts.scheme or href.startswith(("#", "mailto:", "javascript:")) or not parts.path:
                continue
            target = (f.parent / unquote(parts.path)).resolve()
            if not target.is_file():
                broken.append(f"{f.relative_to(html)}: {href}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors(target):
                broken.append(f"{f.relative_to(html)}: {href} (no such anchor)")
            backlinks += "claims.html#claim-" in href
    assert not broken, "\n".join(broken[:20])
    assert backlinks > 0  # the chapters link back to the verdicts that use them
    claims = (html / "book" / "generated" / "claims.html").read_text()
    entry = load_study().plan("smoke")[0].id
    assert f'href="smoke/{entry}.html"' in claims  # and the claims page links to the chapters


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (run.sh test installs it as root)")
def test_search_from_disk_and_short_claims(book):
    """The search page opened from disk (file://) lists results without a console error; each claim of the
    verdict table takes at most two lines at 1000 px. (The explorer's scale menu: test_explore.)"""
    from playwright.sync_api import sync_playwright

    html = book / "_build" / "html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        errors = []
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.goto((html / "search.html").as_uri() + "?q=agreement", wait_until="load")
        page.wait_for_selector("#search-results li", timeout=30000)
        page.wait_for_timeout(1000)  # the summaries would be fetched now
        assert page.locator("#search-results li").count() >= 5
        assert not errors, errors
        # the claims: short statements (two lines at most), the full one on hover
        page.goto((html / "book" / "generated" / "claims.html").as_uri(), wait_until="load")
        cells = page.locator("table").first.locator("td span[title]")
        assert cells.count() == 7
        lines = page.evaluate("""Array.from(document.querySelector('table').querySelectorAll('td span[title]'))
            .map(s => s.getClientRects().length)""")  # an inline span has a box per line it takes
        assert max(lines) <= 2, lines
        browser.close()
