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
    assert nb.metadata["kdlib"]["scale"] == "smoke" and nb.metadata["kdlib"]["results_dir"] == str(book / "results")
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
    cfg = load_study().setup("imdb-textcnn-self", "smoke")
    RunStore(book / "results" / "runs").discard(cfg.run_config("kd", 1))
    stray = book / "_build" / "html" / "book" / "generated" / "smoke" / "dropped-entry.html"
    stray.write_text("a chapter no longer in the plan")
    assert driver_main(argv) == 0
    assert not list(gen.glob(".*.tmp.ipynb")) and not stray.exists()
    nb = nbformat.read(gen / "imdb-textcnn-self.ipynb", as_version=4)
    assert f"1 of {len(cfg.runs())} runs are missing" in _stream_text(nb)
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
                        "--only", "vowels-seqcnn-self"]) == 0
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
            page.wait_for_function(f"document.getElementById({target!r}).open === true", timeout=5000)
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
                seen += sorted({f"wider than the column by {x['over']} px: {x['what']}" for x in wide})
                problems += [f"{path} @ {width} px: {s}" for s in seen]
                page.close()
            browser.close()
    finally:
        server.shutdown()
    assert not problems, "\n".join(problems)
