"""End to end: the driver on the smoke config runs papermill, generates _toc.yml and builds the book;
headless Chromium then opens built pages and checks what a reader sees."""
import functools
import http.server
import shutil
import threading
from pathlib import Path

import nbformat
import pytest
import yaml

from kdlib import load_study
from kdlib.study import main as driver_main

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    assert driver_main(["--scale", "smoke", "--out", str(out), "--results", str(out / "results")]) == 0
    return out


def test_driver_generates_toc_and_executed_notebooks(book):
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    plan = load_study().plan("smoke")
    setup_files = [c["file"] for c in toc["parts"][1]["chapters"]]
    assert setup_files == [f"book/generated/setups/{e.id}" for e in plan]
    assert (book / "_build" / "html" / "book" / "generated" / "claims.html").is_file()
    nb = nbformat.read(book / "book" / "generated" / "setups" / f"{plan[0].id}.ipynb", as_version=4)
    assert nb.cells[0].source.startswith("# ")
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("remove-cell" in c.metadata["tags"] for c in injected)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


def test_rerun_trains_nothing(book, capsys):
    driver_main(["--scale", "smoke", "--out", str(book), "--results", str(book / "results"),
                 "--only", "vowels-seqcnn-self", "--no-build"])
    nb = nbformat.read(book / "book" / "generated" / "setups" / "vowels-seqcnn-self.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "done before" in text and "trained in" not in text


def test_unknown_plan_entry(book):
    with pytest.raises(SystemExit, match="unknown plan entries"):
        driver_main(["--scale", "smoke", "--out", str(book), "--only", "nope", "--no-build"])


def test_explorer_notebook_executes(book):
    import papermill as pm
    from kdlib.study import to_ipynb

    src = to_ipynb(ROOT / "notebooks" / "explorer.py", book / "explorer.ipynb")
    pm.execute_notebook(str(src), str(book / "explorer-out.ipynb"), kernel_name="python3", progress_bar=False,
                        parameters={"scale": "smoke", "results": str(book / "results")}, cwd=str(ROOT))
    nb = nbformat.read(book / "explorer-out.ipynb", as_version=4)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_pages_render_offline_in_chromium(book):
    from playwright.sync_api import sync_playwright

    html = book / "_build" / "html"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    requests, errors = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1300, "height": 1800})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            entry = load_study().plan("smoke")[0].id
            page.goto(f"{base}/book/generated/setups/{entry}.html", wait_until="networkidle")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20000)
            page.wait_for_selector(".widget-tab, .jupyter-widget-Tab, .lm-TabBar", timeout=20000)
            assert page.evaluate("Array.from(document.images).filter(i => i.src.endsWith('.png'))"
                                 ".every(i => i.complete && i.naturalWidth > 0)")
            assert page.evaluate("document.querySelectorAll('img[src$=\".png\"]').length") >= 3
            assert "p (BY)" in page.inner_text("body") and page.locator("table").count() >= 3
            page.screenshot(path=str(shots / "setup-page.png"), full_page=False)
            page.goto(f"{base}/book/methods.html", wait_until="networkidle")
            page.wait_for_selector("mjx-container", timeout=20000)  # MathJax from the vendored copy
            page.goto(f"{base}/book/generated/claims.html", wait_until="networkidle")
            assert "not tested at this scale" in page.inner_text("body")
            page.screenshot(path=str(shots / "claims-page.png"))
            browser.close()
    finally:
        server.shutdown()
    outside = [u for u in requests if not u.startswith(base) and not u.startswith("data:") and not u.startswith("blob:")]
    assert not outside, f"pages fetched from the network: {outside[:5]}"
    assert not [e for e in errors if "Plotly" in e or "require" in e], errors


def test_every_plan_param_is_a_notebook_parameter(tmp_path):
    import papermill as pm
    from kdlib.study import to_ipynb

    known = set(pm.inspect_notebook(str(to_ipynb(ROOT / "notebooks" / "setup.py", tmp_path / "s.ipynb"))))
    study = load_study()
    for scale in study.scales:
        for entry in study.plan(scale):
            assert set(entry.params) <= known, (scale, entry.id)
    with pytest.raises(SystemExit, match=r"has no parameter\(s\) \['colour'\]"):
        from kdlib.study import execute
        execute(ROOT / "notebooks" / "setup.py", tmp_path / "x.ipynb", {"colour": "red"}, "x")


def test_only_keeps_the_whole_plan_in_the_toc(book):
    driver_main(["--scale", "smoke", "--out", str(book), "--results", str(book / "results"),
                 "--only", "imdb-textcnn-self", "--no-build"])
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    assert len(toc["parts"][1]["chapters"]) == len(load_study().plan("smoke"))
