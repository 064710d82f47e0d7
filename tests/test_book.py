"""End to end: the driver on the smoke plan trains, executes the chapters, generates _toc.yml and builds
the book; the book shows only chapters executed for its own configuration, a failed chapter never
replaces a good one, and headless Chromium opens built pages as a reader would."""
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import nbformat
import pytest
import yaml

from kdlib import load_study
from kdlib.driver import chapter_metadata, execute_chapter
from kdlib.driver import main as driver_main

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

    from kdlib.chapters import to_ipynb

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
            page.screenshot(path=str(shots / "claims-page.png"))
            browser.close()
    finally:
        server.shutdown()
    outside = [u for u in requests if not u.startswith(base) and not u.startswith("data:") and not u.startswith("blob:")]
    assert not outside, f"pages fetched from the network: {outside[:5]}"
    assert not [e for e in errors if "Plotly" in e or "require" in e], errors


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
