"""The driver: study.yaml -> checks -> training phase (an executor fills the run store) -> the chapters
(papermill notebooks that read the store) -> generated _toc.yml -> Jupyter Book.

    python -m kdlib.driver                         # the default offline study and its book
    python -m kdlib.driver --scale paper --list    # what a scale's plan runs, and what it costs
    python -m kdlib.driver --scale smoke --executor ray
    python -m kdlib.driver --scale mid --workers 2 # recompute the shipped CIFAR-10 runs (about an hour)

Everything is checked before anything trains; finished runs are never retrained; a chapter replaces
the previous one only when it executed to the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import vendor
from .config import ConfigError, canonical_json
from .paths import REPO_ROOT, from_root
from .progress import ProgressBar, fmt_seconds
from .studyfile import PlanEntry, Study, load_study

STATIC_PAGES = ("intro.md", "reading.md", "methods.md", "cluster.md")
RESULT_CHAPTERS = (("summary", "Summary across setups"), ("claims", "The paper's claims, checked"),
                   ("appendix", "Reproducibility appendix"))
RUNNING_CHAPTERS = (("gpu_plan", "The paper scale on a GPU: run plan"),)


def _log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Chapter:
    """One setup chapter to execute: a plan entry of a scale, read from that scale's results folder."""

    scale: str
    entry: PlanEntry
    setup_key: str
    title: str
    results_dir: Path
    train_missing: bool
    runs: str = ""  # runs_digest of the store when the chapter is listed

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
    from .store import _pid_alive

    n = 0
    for p in gen.rglob(".*.tmp.ipynb") if gen.is_dir() else []:
        pid = p.name.split(".")[-3]
        if not (pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid))):
            p.unlink(missing_ok=True)
            n += 1
    return n


def execute_chapter(chapter: str, output: Path, params: dict, title: str, meta: dict, verbose: bool = False) -> float:
    """Execute into a temporary file and rename it over `output` only when it ran to the end."""
    import nbformat

    from .chapters import execute

    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_notebook(output)
    try:
        execute(chapter, tmp, params, log_output=verbose)
        nb = nbformat.read(tmp, as_version=4)
        tidy_for_book(nb, title, {**meta, "executed": time.strftime("%Y-%m-%d %H:%M:%S")})
        nbformat.write(nb, tmp)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return time.perf_counter() - started


def write_toc(out: Path, parts: list[tuple[str, list[str]]]) -> Path:
    gen = "book/generated"
    toc = {"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "The study", "chapters": [{"file": "book/reading"}, {"file": "book/methods"}]}]}
    for caption, files in parts:
        if files:
            toc["parts"].append({"caption": caption, "chapters": [{"file": f"{gen}/{f}"} for f in files]})
    toc["parts"].append({"caption": "Results", "chapters": [{"file": f"{gen}/{name}"} for name, _ in RESULT_CHAPTERS]})
    toc["parts"].append({"caption": "Running it yourself", "chapters": [{"file": f"{gen}/{name}"} for name, _ in RUNNING_CHAPTERS]
                         + [{"file": "book/cluster"}]})
    path = out / "_toc.yml"
    path.write_text("# Generated by `python -m kdlib.driver` from study.yaml: edit the study file, not this.\n"
                    + yaml.safe_dump(toc, sort_keys=False))
    return path


def assemble(out: Path) -> None:
    """Copy the book's static sources into another root (used when --out is not the repository)."""
    if out.resolve() == REPO_ROOT.resolve():
        return
    (out / "book").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "_config.yml", out / "_config.yml")
    for page in STATIC_PAGES:
        shutil.copy(REPO_ROOT / "book" / page, out / "book" / page)
    shutil.copytree(REPO_ROOT / "book" / "assets", out / "book" / "assets", dirs_exist_ok=True)
    if vendor.VENDOR.is_dir():
        shutil.copytree(vendor.VENDOR, out / "book" / "_vendor", dirs_exist_ok=True)


def build_book(out: Path) -> float:
    """Build the HTML from scratch: pages of chapters no longer in the TOC must not stay in _build/html."""
    started = time.perf_counter()
    shutil.rmtree(out / "_build" / "html", ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(out), "--builder", "html",
           "--warningiserror", "--keep-going", "--all"]  # --all: a new plan changes every page's navigation
    res = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-6000:] + res.stderr[-6000:])
        raise SystemExit(f"jupyter-book build failed (exit {res.returncode}); see the output above")
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------ listing
def list_plan(study: Study, scale: str, entries: list[PlanEntry]) -> None:
    from .costs import arch_label, estimate_costs

    costs = estimate_costs(study, scale, entries)
    cfgs = {e.id: costs[e.id]["setup"] for e in entries}
    rows = []
    for e in entries:
        cfg = cfgs[e.id]
        c = costs.get(e.id, {})
        prov = cfg.provenance or {}
        rows.append([e.id, cfg.dataset, cfg.modality, f"{arch_label(cfg.teacher)}->{arch_label(cfg.student)}", cfg.variant,
                     cfg.recipe or "-", f"w={','.join(f'{w:g}' for w in cfg.kd_weights)} T={cfg.temperature:g}",
                     str(len(cfg.runs())), c.get("per_run", "?"), c.get("total", "?"),
                     str(prov.get("kind", "?"))[:40]])
    head = ["entry", "dataset", "modality", "teacher->student", "variant", "recipe", "kd weights / T", "runs",
            "per run", "entry total", "provenance (kind)"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    datasets = sorted({cfg.dataset for cfg in cfgs.values()})
    archs = sorted({arch_label(m) for cfg in cfgs.values() for m in (cfg.teacher, cfg.student)})
    print(f"\n{len(entries)} entries, {len({e.setup for e in entries})} setups, {len(datasets)} datasets "
          f"({', '.join(datasets)}), {len(archs)} architectures ({', '.join(archs)}); "
          f"distinct runs and the whole plan's cost: {costs.get('_plan', {}).get('summary', '?')}")


# ------------------------------------------------------------------------------------------ phases
def training_phase(args, study: Study, scale: str, setups: list, results: Path) -> bool:
    from .executors import Report, collect_jobs, make_executor, write_failures
    from .preflight import check_store
    from .store import RunStore

    store = RunStore(results / "runs")
    if store.removed_stale:
        _log(f"removed {store.removed_stale} temporary folder(s) left in {store.root} by interrupted runs")
    jobs = collect_jobs(setups)
    if args.repair:
        repair(store, jobs)
    check_store(store, jobs)
    missing = [j for j in jobs if not store.has(j.cfg)]
    _log(f"training phase ({args.executor} executor, device {args.device}): {len(jobs)} distinct runs, "
         f"{len(jobs) - len(missing)} already in {store.root}, {len(missing)} to train")
    if not missing:  # a complete store is only read: it may be read-only (a published results folder)
        _best_effort(lambda: write_failures(results, Report()), f"could not update {results / 'failed_runs.json'}")
        return True
    from .provenance import code_version

    code_version()  # read (and cached) now: the code that trains, not what the tree holds when the phase ends
    executor = make_executor(args.executor, args.device, args.workers, args.address, args.shared_fs)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report = executor.run(jobs, store)  # StoreUnwritable (disk full, read-only) stops it at the first write
    for line in report.summary_lines():
        _log(line)
    write_failures(results, report)
    write_training_log(results, args, report, started)
    return not report.failed


def write_training_log(results: Path, args, report, started: str) -> None:
    """Append what this training phase did, where and how long, to the store's training log."""
    import platform

    from .provenance import code_version
    from .trainlog import append_phase

    append_phase(results, {
        "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": round(report.seconds, 1),
        "executor": args.executor, "workers": args.workers, "device": args.device,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
        "code_version": code_version(), "runs_trained": len(report.trained), "runs_loaded": report.loaded,
        "runs_failed": len(report.failed),
        "entries": {e: {k: round(v, 1) if isinstance(v, float) else v for k, v in d.items()}
                    for e, d in report.per_entry.items()}})


def _best_effort(write, what: str) -> None:
    """Bookkeeping beside the runs: a read-only results folder still builds the book."""
    try:
        write()
    except OSError as e:
        _log(f"note: {what} ({e.strerror or e}); the results folder is read-only?")


def repair(store, jobs) -> None:
    """Retrain damaged runs: a folder whose files do not all verify (checksums, every file read, config
    hash) is moved away before training."""
    problems = {j.cfg.hash: store.verify(j.cfg) for j in jobs if store.has(j.cfg)}
    damaged = [j for j in jobs if problems.get(j.cfg.hash)]
    for j in damaged:
        _log(f"repair: {problems[j.cfg.hash]}")
        store.discard(j.cfg)
    if damaged:
        _log(f"repair: {len(damaged)} damaged run(s) will be retrained")


def check_store_files(results: Path, seal: bool) -> int:
    """--verify: every run of the store checked in full; --seal: manifests written for legacy runs
    whose files all read and whose config hashes to their folder. Returns the exit code."""
    from .store import RunStore

    store = RunStore.open_existing(results)
    if store is None:
        raise ConfigError(f"no run store in {results} (no runs/ folder); nothing to {'seal' if seal else 'verify'}")
    hashes = store.hashes()
    legacy = [h for h in hashes if store.manifest(h) is None]
    if seal:
        problems = {h: p for h in legacy if (p := store.seal(h))}
        _log(f"seal: {len(legacy) - len(problems)} run(s) without a manifest sealed, "
             f"{len(hashes) - len(legacy)} had one already, {len(problems)} damaged (not sealed) in {store.root}")
    else:
        problems = {h: p for h in hashes if (p := store.verify(h))}
        _log(f"verify: {len(hashes)} run(s) in {store.root}: {len(hashes) - len(problems)} whole, "
             f"{len(problems)} damaged; {len(legacy)} with no manifest (legacy: files read and config hash checked; "
             "`--seal` writes their manifests)")
    for h, p in problems.items():
        _log(f"  DAMAGED {h}: {p}")
    return 1 if problems else 0


def shipped_chapters(study: Study, book_scale: str) -> tuple[list, list[str]]:
    """Chapters of the shipped scales (read, never trained, in this build) and what is missing from them.
    An entry whose first seeds are complete (say a GPU check that ran out of time) is shown with those
    seeds; one whose runs are stored under another config hash is left out, with the command that
    recomputes it."""
    from .store import RunStore

    chapters, notes = [], []
    for s in study.shipped_scales(book_scale):
        results = from_root(study.results_dir(s))
        if not (results / "runs").is_dir():
            notes.append(f"{s}: no runs in {results} (never run here and not shipped); "
                         f"compute them with `python -m kdlib.driver --scale {s}`")
            continue
        store = RunStore(results / "runs")
        pending = study.pending(s)
        for e in study.plan(s):
            cfg = study.entry_setup(s, e)
            missing = store.missing(cfg)
            entry, title = e, e.title or cfg.title
            if missing and e.id in pending:  # still being trained: named, not shown half done
                notes.append(f"{s}/{e.id}: not trained yet ({complete_seeds(cfg, store)} of {cfg.n_seeds} seeds "
                             f"complete so far); train it with `python -m kdlib.driver --scale {s} --only {e.id} --train-only`")
                continue
            if missing:
                stale = store.stale_versions(missing)
                if stale:
                    fields = ", ".join(sorted({f for v in stale.values() for f in v["fields"]}))
                    notes.append(f"{s}/{e.id}: {len(stale)} of its {len(cfg.runs())} runs are in {results} under another "
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
            chapters.append(Chapter(s, entry, setup_key(cfg), title, results, train_missing=False,
                                    runs=runs_digest(cfg, store)))
    return chapters, notes


def runs_digest(cfg, store) -> str:
    """Which of a setup's runs the store holds, and (with a manifest) which metrics: a kept chapter whose
    digest changed (a run deleted, repaired or retrained) is executed again."""
    parts = []
    for r in cfg.runs():
        if store.has(r):
            files = (store.manifest(r) or {}).get("files", {})
            parts.append(f"{r.hash}:{files.get('metrics.json', {}).get('sha256', '')}")
    return hashlib.sha256(",".join(sorted(parts)).encode()).hexdigest()[:16]


def complete_seeds(cfg, store) -> int:
    """How many seeds, counted from 0, have every run of the setup in the store."""
    runs = cfg.runs()
    n = 0
    while n < cfg.n_seeds and all(store.has(r) for r in runs if r.seed == n):
        n += 1
    return n


def notebook_phase(args, study: Study, book_scale: str, chapters: list[Chapter], out: Path,
                   shipped: list[str], jobs: int) -> tuple[dict, list[str]]:
    """Execute every chapter (in parallel kernels), then the result chapters; returns timings and failures."""
    gen = out / "book" / "generated"
    study_file = str(study.path.resolve())
    timings, failed = {}, []
    bar = ProgressBar(len(chapters) + len(RESULT_CHAPTERS) + len(RUNNING_CHAPTERS), label="chapters")

    def run_setup_chapter(ch: Chapter):
        params = {"scale": ch.scale, "results_dir": str(ch.results_dir), "study_file": study_file,
                  "book_scale": book_scale, "entry_id": ch.entry.id, "setup": ch.entry.setup,
                  "device": args.device, "train_missing": ch.train_missing, **ch.entry.params}
        meta = {"chapter": "setup", "scale": ch.scale, "entry": ch.entry.id, "results_dir": str(ch.results_dir),
                "study_file": study_file, "setup_key": ch.setup_key, "book_scale": book_scale, "runs": ch.runs}
        return execute_chapter("setup", gen / f"{ch.relpath}.ipynb", params, ch.title, meta, args.verbose)

    def run(fn, key, *a):
        try:
            timings[key] = fn(*a)
            bar.update(done=1)
        except Exception as e:
            failed.append(key)
            bar.update(failed=1)
            _log(f"\nchapter {key} FAILED: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
                 + (f"\n{traceback.format_exc(limit=2)}" if args.verbose else ""))

    removed = remove_stale_notebooks(gen)
    if removed:
        _log(f"removed {removed} temporary notebook(s) left in {gen} by interrupted builds")
    _run_all(lambda ch: run(run_setup_chapter, ch.relpath, ch), chapters, jobs)
    common = {"scale": book_scale, "results_dir": str(from_root(args.results or study.results_dir(book_scale))),
              "study_file": study_file, "book_scale": book_scale, "shipped": shipped}
    finals = [(n, t, common) for n, t in RESULT_CHAPTERS] + [
        (n, t, {k: v for k, v in common.items() if k != "shipped"}) for n, t in RUNNING_CHAPTERS]
    _run_all(lambda c: run(lambda: execute_chapter(c[0], gen / f"{c[0]}.ipynb", c[2], c[1],
                                                   {"chapter": c[0], "book_scale": book_scale}, args.verbose), c[0]),
             finals, jobs)
    bar.close()
    return timings, failed


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
        ok = (meta.get("scale") == ch.scale and meta.get("results_dir") == str(ch.results_dir)
              and meta.get("study_file") == study_file and meta.get("setup_key") == ch.setup_key
              and meta.get("runs") == ch.runs)
        if ok:
            parts.setdefault(ch.scale, []).append(ch.relpath)
        elif meta:
            _log(f"note: {ch.relpath} in {gen} was executed for another configuration; left out of the book")
    return [(study.scale_title(s), files) for s, files in parts.items()]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kdlib.driver", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="cpu", help="a scale of the study file: smoke, cpu (default), mid or paper")
    ap.add_argument("--study", default=None, help="study file (default: study.yaml)")
    ap.add_argument("--results", default=None, help="run store folder (default: the scale's, e.g. results/cpu)")
    ap.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    ap.add_argument("--executor", default="local", help="local (default; this machine) or ray")
    ap.add_argument("--workers", type=int, default=None,
                    help="parallel runs: local worker processes (default: one per CPU core on the CPU, 1 on a GPU; "
                         "1 trains in this process); ray: CPUs of a local cluster")
    ap.add_argument("--address", default=None, help="ray: cluster address (auto, ray://host:10001); default: start one")
    ap.add_argument("--shared-fs", action="store_true", help="ray: workers write into the results folder themselves")
    ap.add_argument("--jobs", type=int, default=2, help="chapters executed at once (default 2)")
    ap.add_argument("--out", default=None, help="book root to write into (default: the repository)")
    ap.add_argument("--only", action="append", default=None, help="run only these plan entries (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the scale's plan with its cost and exit")
    ap.add_argument("--train-only", action="store_true", help="stop after the training phase")
    ap.add_argument("--repair", action="store_true",
                    help="check every file of the plan's runs (checksums, reads, config hash); retrain damaged runs")
    ap.add_argument("--verify", action="store_true",
                    help="check every run of the results folder in full, name the damaged ones, and exit")
    ap.add_argument("--seal", action="store_true",
                    help="write manifests for runs stored without one (after checking every file reads and "
                         "config.json hashes to its folder), and exit")
    ap.add_argument("--no-build", action="store_true", help="execute the chapters but do not build the book")
    ap.add_argument("--verbose", action="store_true", help="stream each chapter's output")
    return ap.parse_args(argv)


def check_options(args, study: Study) -> list[PlanEntry]:
    """Every option, before anything runs."""
    from .executors import EXECUTORS
    from .train import resolve_device

    study.check_scale(args.scale)
    resolve_device(args.device)
    if args.executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {args.executor!r}; allowed: {', '.join(EXECUTORS)}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if args.executor == "local" and (args.address or args.shared_fs):
        raise ConfigError("--address and --shared-fs apply to --executor ray only")
    if args.verify and args.seal:
        raise ConfigError("--verify and --seal are separate steps; give one")
    plan = study.plan(args.scale)
    if args.only:
        unknown = sorted(set(args.only) - {e.id for e in plan})
        if unknown:
            raise ConfigError(f"unknown plan entries {unknown}; the {args.scale} plan has: {[e.id for e in plan]}")
        plan = [e for e in plan if e.id in args.only]
    if args.workers is None:
        args.workers = 1 if resolve_device(args.device).type == "cuda" else min(os.cpu_count() or 1, 8)
    return plan


def stale_kept(ch: Chapter, gen: Path, study: Study) -> bool:
    """A chapter executed earlier for this configuration whose runs in the store have changed since."""
    meta = chapter_metadata(gen / f"{ch.relpath}.ipynb")
    return (meta.get("scale") == ch.scale and meta.get("results_dir") == str(ch.results_dir)
            and meta.get("study_file") == str(study.path.resolve()) and meta.get("setup_key") == ch.setup_key
            and meta.get("runs") != ch.runs)


def check_out(out: Path) -> None:
    """The book root can be written (checked before training, not after it)."""
    probe = out / f".kdlib-probe-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {out}: the book cannot be written there ({e.strerror or e}); pick another folder") from None


def _terminate(signum, frame):
    """SIGTERM (timeout, Slurm, kill) stops the driver as Ctrl-C does: no half-written notebook stays."""
    raise KeyboardInterrupt


def run(argv=None) -> int:
    from .preflight import resolve_plan

    args = parse_args(argv)
    started = time.perf_counter()
    study = load_study(args.study)
    plan = check_options(args, study)
    if args.list:
        list_plan(study, args.scale, plan)
        return 0
    results = from_root(args.results or study.results_dir(args.scale)).resolve()
    if args.verify or args.seal:
        return check_store_files(results, args.seal)
    out = Path(args.out or REPO_ROOT).resolve()
    if not args.train_only:
        check_out(out)
    _log(f"study {study.path.name}, scale {args.scale}: {len(plan)} plan entries, results in {results}")
    setups = resolve_plan(study, args.scale, plan)
    ok = training_phase(args, study, args.scale, setups, results)
    if args.train_only:
        return 0 if ok else 1
    if not args.no_build:
        vendor.ensure()
    assemble(out)
    from .store import RunStore

    store = RunStore(results / "runs")
    built = {e.id for e in plan}
    # the whole plan: chapters of earlier --only runs stay, and are executed again if their runs changed
    # (a kept chapter must not show runs the store no longer holds). The training phase has trained
    # everything it could: a chapter never trains (it lists the failed runs instead).
    all_chapters = []
    for e in study.plan(args.scale):
        cfg = study.entry_setup(args.scale, e)
        title = e.title or (cfg.title if e.id == e.setup else f"{cfg.title} ({e.id})")
        all_chapters.append(Chapter(args.scale, e, setup_key(cfg), title, results, train_missing=False,
                                    runs=runs_digest(cfg, store)))
    gen = out / "book" / "generated"
    chapters = [ch for ch in all_chapters if ch.entry.id in built or stale_kept(ch, gen, study)]
    for ch in chapters:
        if ch.entry.id not in built:
            _log(f"note: {ch.relpath} was kept from an earlier build but its runs in the store changed; executing it again")
    extra, notes = shipped_chapters(study, args.scale)
    for n in notes:
        _log(f"note: {n}")
    all_chapters += extra
    timings, failed = notebook_phase(args, study, args.scale, chapters + extra, out,
                                     study.shipped_scales(args.scale), args.jobs)
    _best_effort(lambda: (results / "driver_log.json").write_text(json.dumps(
        {"chapters_seconds": {k: round(v, 1) for k, v in timings.items()}, "failed_chapters": failed, "notes": notes},
        indent=1)), f"could not write {results / 'driver_log.json'}")
    parts = book_parts(study, args.scale, all_chapters, out)
    write_toc(out, parts)
    if not args.no_build:
        secs = build_book(out)
        _log(f"book built in {secs:.1f} s: {out / '_build' / 'html' / 'index.html'}")
    _log(f"study finished in {fmt_seconds(time.perf_counter() - started)}")
    if failed or not ok:
        _log(f"FAILED: {len(failed)} chapter(s) {failed}" if failed else "FAILED: some runs failed (listed above)")
        return 1
    return 0


def main(argv=None) -> int:
    """The command line: errors in the input are one line, Ctrl-C is one line."""
    from .preflight import PreflightError
    from .store import StoreError, StoreUnwritable

    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are in the store, unfinished ones left nothing behind; "
              "run the same command again to continue", file=sys.stderr)
        return 130
    except StoreUnwritable as e:
        print(f"error: {e}; the training phase stopped at this first failed write (finished runs are stored)",
              file=sys.stderr)
        return 1
    except (ConfigError, PreflightError, StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
