"""The book's assembly: which chapters a build has (the scale's plan, the shipped scales' committed runs,
and the book's own chapters named in study.yaml), executing them with papermill (a temporary file renamed
into place only when it ran to the end), the generated _toc.yml, and the Jupyter Book build.

`make_book` is what the driver calls after its training phase; nothing here trains.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import canonical_json
from ..paths import REPO_ROOT
from ..progress import ProgressBar
from ..results import ResultsFolder
from ..store import StoreError, pid_alive
from ..studyfile import PlanEntry, Study
from . import reuse, vendor
from .notebooks import execute
from .run_costs import BENCH_RESULTS
from .frames import damaged_runs, repair_command

STATIC_PAGES = ("intro.md", "reading.md", "methods.md", "cluster.md")


def _log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Chapter:
    """One setup chapter to execute: a plan entry of a scale, read from that scale's results folder."""

    scale: str
    entry: PlanEntry
    setup_key: str
    title: str
    results: ResultsFolder
    runs: str = ""  # runs_digest of the store when the chapter is listed
    run_hashes: tuple = ()  # every run of the entry's setup, stored or not: what the chapter reads of its store

    @property
    def relpath(self) -> str:
        return f"{self.scale}/{self.entry.id}"


def setup_key(cfg) -> str:
    """A digest of a resolved setup: a chapter executed for another configuration is stale."""
    return hashlib.sha256(canonical_json(cfg.to_dict()).encode()).hexdigest()[:16]


def chapter_metadata(path: Path) -> dict:
    import nbformat

    try:
        return nbformat.read(path, as_version=4).metadata.get("kdlib", {})
    except Exception:
        return {}


def book_relative(path, out: Path) -> str:
    """A path as the book shows it: relative to the book's root, else to the repository, else as given
    (a store the user keeps elsewhere)."""
    p = Path(path).resolve()
    for root in (Path(out).resolve(), REPO_ROOT.resolve()):
        try:
            return p.relative_to(root).as_posix() or "."
        except ValueError:
            pass
    return str(p)


def location_key(results_root, study_file) -> str:
    """Which results folder and study file a chapter was executed for, without writing the machine's paths
    into the book: a digest of both absolute paths."""
    where = f"{Path(results_root).resolve()}\n{Path(study_file).resolve()}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def scrub_paths(nb, out: Path, output: Path):
    """The executed notebook without this machine's paths: the book's root and the repository become
    relative paths in every cell, output and metadata field; papermill's temporary input and output paths
    are dropped. A reader (and the built _sources) sees `results/cpu/runs`, not `/home/.../results/cpu/runs`."""
    import nbformat

    pm = nb.metadata.get("papermill", {})
    pm.pop("input_path", None)
    pm["output_path"] = book_relative(output, out)
    text = json.dumps(nb)
    roots = {str(Path(out).resolve()), str(REPO_ROOT.resolve()), str(Path(out).absolute()), str(REPO_ROOT)}
    for root in sorted((r for r in roots if r not in ("/", "") and json.dumps(r)[1:-1] == r), key=len, reverse=True):
        text = re.sub(re.escape(root) + r"/", "", text)
        text = re.sub(re.escape(root) + r"(?![\w-]|\.\w)", ".", text)  # not a longer name (/book2, /book.bak)
    return nbformat.from_dict(json.loads(text))


def tidy_for_book(nb, title: str, meta: dict) -> None:
    """Give the executed notebook a title and its build metadata, hide the parameter cells, fold code."""
    import nbformat

    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            tags.append("remove-cell")
        elif cell.cell_type == "code" and not {"remove-cell", "remove-input"} & set(tags):
            tags.append("hide-input")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {title}"))
    nb.metadata["kdlib"] = meta


def _tmp_notebook(output: Path) -> Path:
    return output.with_name(f".{output.stem}.{os.getpid()}.tmp.ipynb")


def remove_stale_notebooks(gen: Path) -> int:
    """Remove temporary notebooks left by killed drivers (`.<entry>.<pid>.tmp.ipynb` whose process is
    gone), as the store does for runs; a live driver's are kept."""
    n = 0
    for p in gen.rglob(".*.tmp.ipynb") if gen.is_dir() else []:
        pid = p.name.split(".")[-3]
        if not (pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))):
            p.unlink(missing_ok=True)
            n += 1
    return n


def execute_chapter(chapter: str, output: Path, params: dict, title: str, meta: dict, verbose: bool = False,
                    out: Path | None = None) -> float:
    """Execute into a temporary file and rename it over `output` only when it ran to the end; `out` (the
    book's root, by default the repository) is where paths in the notebook are made relative to."""
    import nbformat

    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_notebook(output)
    try:
        execute(chapter, tmp, params, log_output=verbose)
        nb = nbformat.read(tmp, as_version=4)
        tidy_for_book(nb, title, {**meta, "executed": time.strftime("%Y-%m-%d %H:%M:%S"),
                                  "seconds": round(time.perf_counter() - started, 1)})
        nb = scrub_paths(nb, out or REPO_ROOT, output)
        nbformat.write(nb, tmp)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return time.perf_counter() - started


def write_toc(out: Path, study: Study, parts: list[tuple[str, list[str]]]) -> Path:
    gen = "book/generated"
    toc = {"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "The study", "chapters": [{"file": "book/reading"}, {"file": "book/methods"}]}]}
    for caption, files in parts:
        if files:
            toc["parts"].append({"caption": caption, "chapters": [{"file": f"{gen}/{f}"} for f in files]})
    toc["parts"].append({"caption": "Results", "chapters": [{"file": f"{gen}/{name}"} for name, _ in study.book_chapters("results")]})
    toc["parts"].append({"caption": "Running it yourself", "chapters": [{"file": f"{gen}/{name}"} for name, _ in study.book_chapters("running")]
                         + [{"file": "book/cluster"}]})
    path = out / "_toc.yml"
    path.write_text("# Generated by `python -m kdlib.driver` from study.yaml: edit the study file, not this.\n"
                    + yaml.safe_dump(toc, sort_keys=False))
    return path


def assemble(out: Path) -> None:
    """Copy the book's static sources into another root (used when --out is not the repository); a write that
    fails (a full disk, no permission) stops with one line naming the folder."""
    if out.resolve() == REPO_ROOT.resolve():
        return
    try:
        (out / "book").mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "_config.yml", out / "_config.yml")
        for page in STATIC_PAGES:
            shutil.copy(REPO_ROOT / "book" / page, out / "book" / page)
        shutil.copytree(REPO_ROOT / "book" / "assets", out / "book" / "assets", dirs_exist_ok=True)
        if vendor.VENDOR.is_dir():
            shutil.copytree(vendor.VENDOR, out / "book" / "_vendor", dirs_exist_ok=True)
    except (OSError, shutil.Error) as e:
        from ..config import ConfigError

        raise ConfigError(f"--out {out}: the book's sources cannot be written there ({str(e)[:300]}); free space or "
                          "pick another folder") from None


def build_book(out: Path) -> float:
    """Build the HTML from scratch into a staging folder, then swap it in for `_build/html`: pages of chapters
    no longer in the TOC do not stay, and a build that fails or is killed leaves the previous book whole."""
    started = time.perf_counter()
    build = out / "_build"
    staging = build / f".staging@{socket.gethostname()}@{os.getpid()}"
    for old in build.glob(".staging@*") if build.is_dir() else []:  # left by killed builds on this machine
        parts = old.name.split("@")
        if len(parts) == 3 and parts[1] == socket.gethostname() and parts[2].isdigit() and not pid_alive(int(parts[2])):
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(out), "--builder", "html",
           "--path-output", str(staging), "--warningiserror", "--keep-going", "--all"]  # --all: a new plan changes every page's navigation
    try:
        res = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stdout[-6000:] + res.stderr[-6000:])
            raise SystemExit(f"jupyter-book build failed (exit {res.returncode}); see the output above; the previous "
                             f"book in {build / 'html'} is unchanged")
        html, trash = build / "html", build / f".old-html@{os.getpid()}"
        if html.exists():
            os.replace(html, trash)
        os.replace(staging / "_build" / "html", html)
        shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return time.perf_counter() - started


def shipped_chapters(study: Study, book_scale: str) -> tuple[list, list[str]]:
    """Chapters of the shipped scales (read, never trained, in this build) and what is missing from them.
    An entry whose first seeds are complete (say a GPU check that ran out of time) is shown with those
    seeds; one whose runs are stored under another config hash is left out, with the command that
    recomputes it."""
    chapters, notes = [], []
    for s in study.shipped_scales(book_scale):
        results = ResultsFolder.of(study, s)
        store = results.existing_store()
        if store is None:
            notes.append(f"{s}: no runs in {results.root} (never run here and not shipped); "
                         f"compute them with `python -m kdlib.driver --scale {s}`")
            continue
        pending = study.pending(s)
        for e in study.plan(s):
            cfg = study.entry_setup(s, e)
            missing = store.missing(cfg)
            entry, title = e, e.title or cfg.title
            if missing and e.id in pending:  # still being trained: named, not shown half done
                notes.append(f"{s}/{e.id}: still training ({len(cfg.runs()) - len(missing)} of {len(cfg.runs())} runs stored, "
                             f"{complete_seeds(cfg, store)} of {cfg.n_seeds} seeds complete); train it with `python -m kdlib.driver --scale {s} --only {e.id} --train-only`")
                continue
            if missing:
                stale = store.stale_versions(missing)
                if stale:
                    fields = ", ".join(sorted({f for v in stale.values() for f in v["fields"]}))
                    notes.append(f"{s}/{e.id}: {len(stale)} of its {len(cfg.runs())} runs are in {results.root} under another "
                                 f"config hash (the code or the study file changed: {fields}); the chapter is left out "
                                 f"rather than retrained here. Recompute with `python -m kdlib.driver --scale {s} --only {e.id}`")
                    continue
                seeds = complete_seeds(cfg, store)
                if not seeds:
                    continue  # never run
                notes.append(f"{s}/{e.id}: {seeds} of {cfg.n_seeds} seeds are complete; the chapter shows those")
                entry = PlanEntry(e.id, e.setup, {**e.params, "n_seeds": seeds}, e.title)
                title = f"{title} ({seeds} of {cfg.n_seeds} seeds)"
                cfg = study.entry_setup(s, entry)
            damaged = damaged_runs(store, cfg)
            if damaged:
                notes.append(f"{s}/{e.id}: {len(damaged)} damaged run(s) left out of its chapter ("
                             + "; ".join(list(damaged)[:3]) + (" ..." if len(damaged) > 3 else "")
                             + f"); repair with `{repair_command(s, e.id)}`")
            chapters.append(Chapter(s, entry, setup_key(cfg), title, results, runs=runs_digest(cfg, store),
                                    run_hashes=run_hashes(cfg)))
    return chapters, notes


def run_hashes(cfg) -> tuple:
    return tuple(sorted({r.hash for r in cfg.runs()}))


def runs_digest(cfg, store) -> str:
    """Which of a setup's runs the store holds, and (with a manifest) which metrics: a kept chapter whose
    digest changed (a run deleted, repaired or retrained) is executed again."""
    parts = []
    for r in cfg.runs():
        if store.has(r):
            try:
                files = (store.manifest(r) or {}).get("files", {})
            except StoreError:  # an unreadable manifest: the chapter names the run as damaged
                files = {"metrics.json": {"sha256": "damaged"}}
            parts.append(f"{r.hash}:{files.get('metrics.json', {}).get('sha256', '')}")
    return hashlib.sha256(",".join(sorted(parts)).encode()).hexdigest()[:16]


def complete_seeds(cfg, store) -> int:
    """How many seeds, counted from 0, have every run of the setup in the store."""
    runs = cfg.runs()
    n = 0
    while n < cfg.n_seeds and all(store.has(r) for r in runs if r.seed == n):
        n += 1
    return n


def notebook_phase(study: Study, book_scale: str, book_results: ResultsFolder, chapters: list[Chapter], out: Path,
                   shipped: list[str], device: str, jobs: int, verbose: bool,
                   rerun: bool = False) -> tuple[dict, list[str], list[str]]:
    """Execute every setup chapter (in parallel kernels, never training: the training phase has trained
    what it could), then the book's own chapters; a chapter executed earlier from the same inputs
    (`reuse`) is kept instead unless `rerun`. Returns timings (a reused chapter's from when it was
    executed), failures and the chapters reused."""
    gen = out / "book" / "generated"
    study_file = str(study.path.resolve())
    finals = [(n, t, "results") for n, t in study.book_chapters("results")] + [
        (n, t, "running") for n, t in study.book_chapters("running")]
    timings, failed, reused = {}, [], []
    bar = ProgressBar(len(chapters) + len(finals), label="chapters")
    folders = [book_results] + [ResultsFolder.of(study, s) for s in shipped]
    shared = reuse.shared_digest(study, BENCH_RESULTS)
    whole_book = reuse.book_digest(shared, folders)  # the book's chapters read every folder

    def execute_or_reuse(key: str, chapter: str, params: dict, title: str, meta: dict, inputs: str) -> float:
        output = gen / f"{key}.ipynb"
        digest = reuse.chapter_digest(inputs, chapter, params, title, meta)
        recorded = chapter_metadata(output)
        if not rerun and reuse.reusable(recorded, digest):
            reused.append(key)
            return float(recorded.get("seconds", float("nan")))
        return execute_chapter(chapter, output, params, title, {**meta, "inputs": digest}, verbose, out)

    def run_setup_chapter(ch: Chapter):
        params = {"scale": ch.scale, "results_dir": str(ch.results.root), "study_file": study_file,
                  "book_scale": book_scale, "entry_id": ch.entry.id, "setup": ch.entry.setup,
                  "device": device, "train_missing": False, **ch.entry.params}
        meta = {"chapter": "setup", "scale": ch.scale, "entry": ch.entry.id,
                "results_dir": book_relative(ch.results.root, out), "study_file": book_relative(study_file, out),
                "location": location_key(ch.results.root, study_file), "setup_key": ch.setup_key,
                "book_scale": book_scale, "runs": ch.runs}
        inputs = reuse.with_data(shared, reuse.entry_digest(ch.results, ch.entry.id, ch.run_hashes))  # its entry's runs only
        return execute_or_reuse(ch.relpath, "setup", params, ch.title, meta, inputs)

    def run(fn, key, *a):
        try:
            timings[key] = fn(*a)
            bar.update(done=1)
        except Exception as e:
            failed.append(key)
            bar.update(failed=1)
            _log(f"\nchapter {key} FAILED: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
                 + (f"\n{traceback.format_exc(limit=2)}" if verbose else ""))

    removed = remove_stale_notebooks(gen)
    if removed:
        _log(f"removed {removed} temporary notebook(s) left in {gen} by interrupted builds")
    _run_all(lambda ch: run(run_setup_chapter, ch.relpath, ch), chapters, jobs)
    common = {"scale": book_scale, "results_dir": str(book_results.root), "study_file": study_file,
              "book_scale": book_scale}
    params = {"results": {**common, "shipped": shipped}, "running": common}
    _run_all(lambda c: run(lambda: execute_or_reuse(c[0], c[0], params[c[2]], c[1],
                                                    {"chapter": c[0], "book_scale": book_scale}, whole_book), c[0]),
             finals, jobs)
    bar.close()
    if reused:
        _log(f"{len(reused)} of {len(chapters) + len(finals)} chapters reused: executed earlier from the same code, "
             "study file, packages, parameters and runs they read (--rerun-chapters executes them again)")
    return timings, failed, reused


def _run_all(fn, items, jobs: int) -> None:
    """fn over items, `jobs` at a time. On Ctrl-C or SIGTERM no further item starts; the running ones
    end (their notebook is renamed into place or removed) before the interrupt goes on."""
    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        list(pool.map(fn, items))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def book_parts(study: Study, book_scale: str, chapters: list[Chapter], out: Path) -> list[tuple[str, list[str]]]:
    """The chapters that belong in this book: executed for this scale, results folder, study file and
    setup configuration (recorded in each notebook), grouped by scale."""
    gen = out / "book" / "generated"
    study_file = str(study.path.resolve())
    parts: dict[str, list[str]] = {}
    for ch in chapters:
        meta = chapter_metadata(gen / f"{ch.relpath}.ipynb")
        if executed_for(meta, ch, study_file) and meta.get("runs") == ch.runs:
            parts.setdefault(ch.scale, []).append(ch.relpath)
        elif meta:
            _log(f"note: {ch.relpath} in {gen} was executed for another configuration; left out of the book")
    return [(study.scale_title(s), files) for s, files in parts.items()]


def stale_kept(ch: Chapter, gen: Path, study: Study) -> bool:
    """A chapter executed earlier for this configuration whose runs in the store have changed since."""
    meta = chapter_metadata(gen / f"{ch.relpath}.ipynb")
    return executed_for(meta, ch, str(study.path.resolve())) and meta.get("runs") != ch.runs


def executed_for(meta: dict, ch: Chapter, study_file: str) -> bool:
    """A chapter's recorded metadata match this chapter's scale, results folder, study file and setup."""
    return (meta.get("scale") == ch.scale and meta.get("location") == location_key(ch.results.root, study_file)
            and meta.get("setup_key") == ch.setup_key)


@dataclass
class BookReport:
    """What a build did: seconds per chapter, the chapters that failed, notes on shipped entries, and the
    chapters reused from an earlier build (their seconds are those of that build)."""

    timings: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    reused: list = field(default_factory=list)


def plan_chapters(study: Study, scale: str, results: ResultsFolder) -> list[Chapter]:
    """A chapter per plan entry of the book's scale, with the digest of the runs its store holds now."""
    store = results.store()
    out = []
    for e in study.plan(scale):
        cfg = study.entry_setup(scale, e)
        title = e.title or (cfg.title if e.id == e.setup else f"{cfg.title} ({e.id})")
        out.append(Chapter(scale, e, setup_key(cfg), title, results, runs=runs_digest(cfg, store),
                           run_hashes=run_hashes(cfg)))
    return out


BACKLINKS_CELL = "kdlib-claims-using-this-entry"


def write_backlinks(gen: Path, naming: dict, chapters: list[Chapter]) -> int:
    """Under each setup chapter's title, the verdicts whose evidence names its runs, each linking to its
    evidence block on the claims page (`claims.claims_naming`); replaced at every build. Returns how many
    chapters were written."""
    import nbformat

    from .claims import backlinks_html

    n = 0
    for ch in chapters:
        path = gen / f"{ch.relpath}.ipynb"
        if not path.is_file():
            continue
        nb = nbformat.read(path, as_version=4)
        nb.cells = [c for c in nb.cells if c.get("id") != BACKLINKS_CELL]
        cell = nbformat.v4.new_markdown_cell(backlinks_html(naming.get((ch.scale, ch.entry.id), [])))
        cell["id"] = BACKLINKS_CELL
        nb.cells.insert(1, cell)
        tmp = _tmp_notebook(path)
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
        n += 1
    return n


def write_findings(study: Study, scale: str, results: ResultsFolder, out: Path, chapters: list[Chapter] = ()) -> None:
    """The landing page's findings box and headline figure (`kdlib.book.findings`), from this build's stores,
    and each chapter's links to the claims that use it; a failure is written into the box instead of stopping
    the build."""
    gen = out / "book" / "generated"
    try:
        from .claims import claims_naming, verdict_table
        from .evidence import BookEvidence
        from .findings import write

        evidence = BookEvidence.load(str(study.path), scale, str(results.root), study.shipped_scales(scale))
        columns = evidence.claim_columns()
        matrix, texts, _ = verdict_table(columns)
        write(gen, evidence, matrix)
        write_backlinks(gen, claims_naming(columns, texts, matrix), list(chapters))
    except Exception as e:  # the rest of the book still builds; the box says why it is empty
        gen.mkdir(parents=True, exist_ok=True)
        (gen / "findings.md").write_text("```{admonition} The answer, computed from this build's runs\n:class: warning\n\n"
                                         f"The findings could not be computed in this build ({type(e).__name__}: {e}).\n```\n")
        _log(f"note: the findings box could not be computed ({type(e).__name__}: {e})")


def make_book(study: Study, scale: str, results: ResultsFolder, out: Path, built: set[str], *, device: str = "auto",
              jobs: int = 2, verbose: bool = False, build: bool = True, rerun: bool = False) -> BookReport:
    """Execute the chapters of this build and build the HTML. `built`: the plan entries this run of the
    driver covers; chapters of earlier `--only` runs stay, and are executed again if their runs changed (a
    kept chapter must not show runs the store no longer holds). A chapter whose inputs are those it was
    executed from is reused (`reuse`), unless `rerun`."""
    if build:
        vendor.ensure()
    assemble(out)
    all_chapters = plan_chapters(study, scale, results)
    gen = out / "book" / "generated"
    chapters = [ch for ch in all_chapters if ch.entry.id in built or stale_kept(ch, gen, study)]
    for ch in chapters:
        if ch.entry.id not in built:
            _log(f"note: {ch.relpath} was kept from an earlier build but its runs in the store changed; executing it again")
    extra, notes = shipped_chapters(study, scale)
    for n in notes:
        _log(f"note: {n}")
    all_chapters += extra
    timings, failed, reused = notebook_phase(study, scale, results, chapters + extra, out, study.shipped_scales(scale),
                                             device, jobs, verbose, rerun)
    report = BookReport(timings, failed, notes, reused)
    try:
        results.write_driver_log({"chapters_seconds": {k: round(v, 1) for k, v in timings.items()},
                                  "reused_chapters": reused, "failed_chapters": failed, "notes": notes})
    except OSError as e:  # a read-only results folder still builds the book
        _log(f"note: could not write the driver log in {results.root} ({e.strerror or e}); the results folder is read-only?")
    write_findings(study, scale, results, out, all_chapters)
    write_toc(out, study, book_parts(study, scale, all_chapters, out))
    if build:
        secs = build_book(out)
        _log(f"book built in {secs:.1f} s: {out / '_build' / 'html' / 'index.html'}")
    return report
