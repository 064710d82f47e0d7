"""The driver, the study's command line: study.yaml -> checks -> training phase (an executor fills the run
store) -> the book (`kdlib.book.build`: papermill chapters that read the store, _toc.yml, Jupyter Book).

    python -m kdlib.driver                         # the default offline study and its book
    python -m kdlib.driver --scale paper --list    # what a scale's plan runs, and what it costs
    python -m kdlib.driver --scale smoke --executor ray
    python -m kdlib.driver --scale mid --workers 2 # recompute the shipped CIFAR-10 runs (about an hour)
    python -m kdlib.driver --scale mid --reproduce 2   # train 2 stored runs per entry again, compare bit for bit
    python -m kdlib.driver --scale mid --compare-with HEAD~1   # the store against its last commit: same readings?

Everything is checked before anything trains; finished runs are never retrained; a chapter replaces
the previous one only when it executed to the end, and one executed earlier from the same inputs (code,
study file, packages, parameters, runs) is reused (`--rerun-chapters` executes it again).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from .config import ConfigError
from .paths import REPO_ROOT
from .progress import fmt_seconds
from .results import ResultsFolder
from .studyfile import PlanEntry, Study, load_study

def _log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------ listing
def list_plan(study: Study, scale: str, entries: list[PlanEntry], device: str = "auto") -> None:
    from .book.run_costs import arch_label, estimate_costs
    from .train import bf16_warning, resolve_device

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
    # the costs come from runs trained where bf16 had its units, or from estimates that assume them
    warning = bf16_warning(resolve_device(device), [cfgs[e.id].train["precision"] for e in entries])
    if warning:
        print(f"{warning}; the bf16 runs' costs above come from a CPU with bf16 units")


# ------------------------------------------------------------------------------------------ phases
def training_phase(args, study: Study, scale: str, setups: list, results: ResultsFolder) -> bool:
    from .executors import make_executor
    from .jobs import collect_jobs
    from .preflight import check_store
    from .store import StoreUnwritable

    store = results.store()
    if store.removed_stale:
        _log(f"removed {store.removed_stale} temporary folder(s) left in {store.root} by interrupted runs")
    jobs = collect_jobs(setups)
    if args.repair:
        repair(store, jobs)
    check_store(store, jobs)
    note_dirty_runs(store, jobs)
    missing = [j for j in jobs if not store.has(j.cfg)]
    _log(f"training phase ({args.executor} executor, device {args.device}): {len(jobs)} distinct runs, "
         f"{len(jobs) - len(missing)} already in {store.root}, {len(missing)} to train")
    if not missing:  # a complete store is only read: it may be read-only (a published results folder)
        _best_effort(lambda: results.write_failures({}), f"could not update the failures in {results.root}")
        return True
    from .provenance import code_version
    from .train import bf16_warning, resolve_device

    warning = bf16_warning(resolve_device(args.device), [j.cfg.train["precision"] for j in missing])
    if warning:  # this machine's CPU; a Ray cluster's workers may differ (each run's provenance says)
        _log(f"{warning}; the progress line estimates the time left from the first epochs")

    code_version()  # read (and cached) now: the code that trains, not what the tree holds when the phase ends
    executor = make_executor(args.executor, args.device, args.workers, args.address, args.shared_fs)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    # the start record first: a phase killed outright (or stopped by a full disk) is still in the log
    phase = {}
    planned: dict = {}
    for j in missing:
        for e in j.entries:
            planned.setdefault(e, []).append(j.cfg.hash)
    _best_effort(lambda: phase.update(id=results.start_training_phase(
        phase_record(args, started, time.perf_counter() - t0), planned)), f"could not log the phase's start in {results.root}")
    try:
        stop_at = None if args.stop_after is None else t0 + 60.0 * args.stop_after
        # StoreUnwritable (disk full, read-only) stops it at the first write
        report = executor.run(jobs, store, stop_at) if stop_at is not None else executor.run(jobs, store)
    except (KeyboardInterrupt, StoreUnwritable) as e:
        # the runs that finished before the stop are stored: the log keeps their cost, so an entry trained
        # over several phases (one stopped at the end of a working session) still adds up
        report = stored_since(missing, store, time.perf_counter() - t0)
        why = ("stopped before the end (Ctrl-C or SIGTERM); the store resumes" if isinstance(e, KeyboardInterrupt)
               else f"stopped by a store-wide write failure ({e}); the store resumes")
        _best_effort(lambda: write_training_log(results, args, report, started, phase.get("id"), interrupted=why),
                     f"could not log the interrupted phase in {results.root}")
        raise
    for line in report.summary_lines():
        _log(line)
    results.write_failures(report.failed)
    write_training_log(results, args, report, started, phase.get("id"))
    return not report.failed


def note_dirty_runs(store, jobs) -> None:
    """From a clean tree, say which stored runs of the plan were trained from uncommitted changes to training
    code (the rule: `provenance.touches_training_code`) or from unrecorded changes: they are reused as stored,
    not silently. Their chapters mark them; deleting their folders retrains them."""
    from .provenance import code_version, touches_training_code
    from .store import StoreError

    if code_version().endswith("-dirty"):
        return
    touched, unrecorded = {}, 0
    for j in jobs:
        if not store.has(j.cfg):
            continue
        try:
            prov = store.provenance(j.cfg)
        except StoreError:
            continue  # damaged: named by the tables and --verify
        if not str(prov.get("code_version", "")).endswith("-dirty"):
            continue
        files = touches_training_code(prov.get("tree_changes", {}))
        if "tree_changes" not in prov:
            unrecorded += 1
        elif files:
            touched[j.cfg.label] = files
    if touched:
        label, files = next(iter(touched.items()))
        _log(f"note: {len(touched)} stored run(s) of this plan were trained from uncommitted changes to training code "
             f"(e.g. {label}: {', '.join(files[:4])}); reused as stored, and their chapters say so")
    if unrecorded:
        _log(f"note: {unrecorded} stored run(s) of this plan were trained from a work tree with uncommitted changes "
             "that their provenance does not record (trained before runs recorded them); reused as stored")


def stored_since(missing: list, store, seconds: float):
    """A report of the jobs that were missing when the phase began and are stored now, with each run's own
    seconds of training (what an interrupted executor could not report itself)."""
    from .jobs import Report

    report = Report(total=len(missing), seconds=seconds)
    for j in missing:
        if store.has(j.cfg):
            report.done(j, store.provenance(j.cfg)["seconds"])
    return report


def phase_record(args, started: str, seconds: float) -> dict:
    """Where and how a training phase ran (the part of its log record known at its start)."""
    import platform

    from .provenance import code_version, cpu_model

    return {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": round(seconds, 1),
            "executor": args.executor, "workers": args.workers, "device": args.device,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}, {cpu_model()}",
            "code_version": code_version()}


def write_training_log(results: ResultsFolder, args, report, started: str, phase_id=None, **extra) -> None:
    """Log what this training phase did, where and how long, in place of its start record (`extra`: e.g. why
    it stopped early)."""
    record = {**extra, **phase_record(args, started, report.seconds),
              "runs_trained": len(report.trained), "runs_loaded": report.loaded, "runs_failed": len(report.failed),
              "entries": {e: {k: round(v, 1) if isinstance(v, float) else v for k, v in d.items()}
                          for e, d in report.per_entry.items()}}
    if phase_id:
        results.finish_training_phase(phase_id, record)
    else:
        results.append_training_phase(record)


def _best_effort(write, what: str) -> None:
    """Bookkeeping beside the runs: a read-only results folder still builds the book."""
    try:
        write()
    except OSError as e:
        _log(f"note: {what} ({e.strerror or e}); the results folder is read-only?")


def repair(store, jobs) -> None:
    """Retrain damaged runs: a folder whose files do not all verify (checksums, every file read, config
    hash) is moved away before training. So is a teacher stored slim (a shipped store keeps no training logits
    or weights) whose students still to train need them: it retrains with its extras (training is
    deterministic, so its shipped outputs come back)."""
    from .runner import teacher_needs

    problems = {j.cfg.hash: store.verify(j.cfg) for j in jobs if store.has(j.cfg)}
    damaged = [j for j in jobs if problems.get(j.cfg.hash)]
    for j in damaged:
        _log(f"repair: {problems[j.cfg.hash]}")
        store.discard(j.cfg)
    if damaged:
        _log(f"repair: {len(damaged)} damaged run(s) will be retrained")
    slim: dict = {}  # teacher hash -> students to train that need what it did not keep
    for j in jobs:
        cfg = j.cfg
        if not cfg.is_student or store.has(cfg) or not store.has(cfg.teacher_hash):
            continue
        need_logits, need_model = teacher_needs(cfg)
        if (need_logits or need_model) and not store.has_teacher_extras(cfg.teacher_hash, model=need_model):
            slim.setdefault(cfg.teacher_hash, []).append(cfg.label)
    for h, students in slim.items():
        _log(f"repair: teacher {h} was stored slim (no training logits / weights); retrained for its "
             f"{len(students)} student(s) still to train, e.g. {students[0]}")
        store.discard(h)


def check_store_files(results: ResultsFolder, seal: bool, scale: str = "") -> int:
    """--verify: every run of the store checked in full, whatever it meets (each damaged run named with its
    file and the reason, then a count); --seal: manifests written for legacy runs whose files all read,
    whose config hashes to their folder and whose metrics follow from their outputs, and the store marked
    sealed once every run has one. Returns the exit code."""
    store = results.existing_store()
    if store is None:
        raise ConfigError(f"no run store in {results.root} (no runs/ folder); nothing to {'seal' if seal else 'verify'}")
    from .store import StoreError

    hashes = store.hashes()
    problems = {h: f"{store.path(h)} is incomplete: {store.verify(h).split('(', 1)[-1].rstrip(')')}"
                for h in store.incomplete()}
    legacy = []
    for h in hashes:
        try:
            if store.manifest(h) is None:
                legacy.append(h)
        except StoreError:
            pass  # verify names it below
    if seal:
        problems.update({h: p for h in legacy if (p := store.seal(h))})
        problems.update({h: p for h in hashes if h not in legacy and (p := store.verify(h))})
        if not problems:
            store.mark_sealed()
        _log(f"seal: {len(legacy) - len([h for h in legacy if h in problems])} run(s) without a manifest sealed, "
             f"{len(hashes) - len(legacy)} had one already, {len(problems)} damaged (not sealed) in {store.root}"
             + ("; the store is marked sealed (a run without a manifest is refused from now on)" if not problems else ""))
    else:
        problems.update({h: p for h in hashes if (p := store.verify(h))})
        _log(f"verify: {len(hashes) + len(store.incomplete())} run folder(s) in {store.root}: "
             f"{len(hashes) - len([h for h in hashes if h in problems])} whole, {len(problems)} damaged; "
             f"{len(legacy)} with no manifest" + (" (the store is sealed: that is damage)" if store.sealed and legacy else
                                                   " (legacy: files read and config hash checked; `--seal` writes their manifests)"))
    for h, p in sorted(problems.items()):
        _log(f"  DAMAGED {h}: {p}")
    if problems:
        _log(f"  to repair: python -m kdlib.driver --scale {scale or '<scale>'} --results {results.root} --repair "
             "--train-only (damaged runs of the plan are retrained)")
    return 1 if problems else 0


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
    ap.add_argument("--stop-after", type=float, default=None, metavar="MINUTES",
                    help="local executor: start no run after this many minutes of training (the runs in flight finish "
                         "and the phase is logged; the next phase resumes): a long entry trained in working sessions")
    ap.add_argument("--repair", action="store_true",
                    help="check every file of the plan's runs (checksums, reads, config hash); retrain damaged runs")
    ap.add_argument("--verify", action="store_true",
                    help="check every run of the results folder in full, name the damaged ones, and exit")
    ap.add_argument("--reproduce", type=int, default=None, metavar="N",
                    help="train N stored runs of each plan entry again (seed 0: the teacher, then kd, control, "
                         "rcd), in memory, compare them with the store bit for bit, and exit (1 if any differs)")
    ap.add_argument("--compare-with", default=None, metavar="OTHER",
                    help="compare the results folder with another one or with the folder as a git revision "
                         "committed it (e.g. HEAD~3): per entry whose runs differ, its numbers and whether each "
                         "test reads the same; then the claims' verdicts from each; exit (1 if a verdict differs)")
    ap.add_argument("--record", action="store_true",
                    help="with --compare-with: write each compared entry's numbers and readings into the results "
                         "folder's replications.json; the entry's chapter shows them while its runs stay the same")
    ap.add_argument("--seal", action="store_true",
                    help="write manifests for runs stored without one (after checking every file reads and "
                         "config.json hashes to its folder), and exit")
    ap.add_argument("--no-build", action="store_true", help="execute the chapters but do not build the book")
    ap.add_argument("--rerun-chapters", action="store_true",
                    help="execute every chapter, also those executed earlier from the same code, study file, "
                         "packages, parameters and runs (by default these are reused)")
    ap.add_argument("--verbose", action="store_true", help="stream each chapter's output")
    return ap.parse_args(argv)


def reproduce_phase(args, study: Study, plan: list, results: ResultsFolder) -> int:
    """--reproduce N: N stored runs per entry trained again and compared with the store; returns the exit code."""
    from .preflight import resolve_plan
    from .reproduce import reproduce_entry, summary

    store = results.existing_store()
    if store is None:
        raise ConfigError(f"no run store in {results.root} (no runs/ folder); nothing to reproduce")
    compared, retrained = [], {}
    for entry_id, setup in resolve_plan(study, args.scale, plan):
        _log(f"reproduce: {entry_id}")
        compared += reproduce_entry(setup, store, args.reproduce, args.device, log=_log, retrained=retrained)
    text, code = summary(compared)
    _log(text)
    return code


def compare_phase(args, study: Study, plan: list, results: ResultsFolder) -> int:
    """--compare-with OTHER: the results folder and another (a folder, or a git revision of this one) side by
    side; returns 1 if a claim's verdict differs between them."""
    from .compare import compare_stores, revision_commit, revision_folder
    from .preflight import resolve_plan

    store = results.existing_store()
    if store is None:
        raise ConfigError(f"no run store in {results.root} (no runs/ folder); nothing to compare")
    with tempfile.TemporaryDirectory(prefix="kdlib-compare-") as tmp:
        other, commit = Path(args.compare_with), None
        if other.is_dir():
            against = str(other.resolve())
        else:
            other, against = revision_folder(args.compare_with, results.root, Path(tmp)), args.compare_with
            commit = revision_commit(args.compare_with)
        other_store = ResultsFolder(other.resolve()).existing_store()
        if other_store is None:
            raise ConfigError(f"--compare-with {args.compare_with}: no run store there (no runs/ folder)")
        _log(f"compare: {results.root} (this store) with {args.compare_with} (the other)")
        changed = compare_stores(study, args.scale, resolve_plan(study, args.scale, plan), store, other_store, log=_log,
                                 against=against, commit=commit, record_to=results if args.record else None)
    return 1 if changed else 0


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
    if args.workers is not None and args.workers > study.limits["workers"]:
        raise ConfigError(f"--workers {args.workers} is above the study's limit of {study.limits['workers']} "
                          "(study.yaml `defaults: limits: workers`)")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if args.executor == "local" and (args.address or args.shared_fs):
        raise ConfigError("--address and --shared-fs apply to --executor ray only")
    if args.stop_after is not None and (args.executor != "local" or not args.stop_after > 0):
        raise ConfigError(f"--stop-after (minutes) must be > 0 and needs --executor local, got {args.stop_after} "
                          f"with --executor {args.executor}")
    if sum(map(bool, (args.verify, args.seal, args.reproduce is not None, args.compare_with))) > 1:
        raise ConfigError("--verify, --seal, --reproduce and --compare-with are separate steps; give one")
    if args.record and not args.compare_with:
        raise ConfigError("--record writes what --compare-with finds; give --compare-with OTHER")
    if args.reproduce is not None and not args.reproduce >= 1:
        raise ConfigError(f"--reproduce N needs N >= 1 runs per plan entry, got {args.reproduce}")
    plan = study.plan(args.scale)
    if args.only:
        unknown = sorted(set(args.only) - {e.id for e in plan})
        if unknown:
            raise ConfigError(f"unknown plan entries {unknown}; the {args.scale} plan has: {[e.id for e in plan]}")
        plan = [e for e in plan if e.id in args.only]
    if args.workers is None:
        args.workers = 1 if resolve_device(args.device).type == "cuda" else min(os.cpu_count() or 1, 8)
    return plan


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
        list_plan(study, args.scale, plan, args.device)
        return 0
    results = ResultsFolder(ResultsFolder.of(study, args.scale, args.results).root.resolve())
    if args.verify or args.seal:
        return check_store_files(results, args.seal, args.scale)
    if args.reproduce is not None:
        return reproduce_phase(args, study, plan, results)
    if args.compare_with:
        return compare_phase(args, study, plan, results)
    out = Path(args.out or REPO_ROOT).resolve()
    if not args.train_only:
        check_out(out)
    _log(f"study {study.path.name}, scale {args.scale}: {len(plan)} plan entries, results in {results.root}")
    setups = resolve_plan(study, args.scale, plan)
    ok = training_phase(args, study, args.scale, setups, results)
    if args.train_only:
        return 0 if ok else 1
    from .book.build import make_book

    book = make_book(study, args.scale, results, out, {e.id for e in plan}, device=args.device, jobs=args.jobs,
                     verbose=args.verbose, build=not args.no_build, rerun=args.rerun_chapters)
    _log(f"study finished in {fmt_seconds(time.perf_counter() - started)}")
    if book.failed or not ok:
        _log(f"FAILED: {len(book.failed)} chapter(s) {book.failed}" if book.failed else "FAILED: some runs failed (listed above)")
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
