"""The house's two wings stay apart: the book wing (kdlib.book, which reads run stores and writes the book)
imports no training code, and the training side has no import circle."""
import ast
import subprocess
import sys
from pathlib import Path

KDLIB = Path(__file__).resolve().parent.parent / "kdlib"
# the modules that train: building arms, the loop, evaluation, a run from config to record, executors, checks
TRAINING = {"train", "runner", "arms", "objectives", "noises", "evaluate", "executors", "executors_ray", "preflight", "backdoor"}


def imported_modules(path: Path) -> set[str]:
    """Every kdlib module a source file imports, at any depth (a lazy import inside a function counts)."""
    package = path.relative_to(KDLIB.parent).with_suffix("").parts[:-1]  # e.g. ("kdlib", "book")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            mod = base + (node.module.split(".") if node.module else [])
            names = [a.name for a in node.names]
            out |= {".".join(mod + [n]) for n in names} | {".".join(mod)}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("kdlib")}


def test_the_book_wing_imports_no_training_code():
    offenders = {}
    for path in sorted((KDLIB / "book").glob("*.py")):
        bad = sorted(m for m in imported_modules(path) if set(m.split(".")[1:2]) & TRAINING)
        if bad:
            offenders[path.name] = bad
    assert not offenders, f"book modules importing training code: {offenders}"


def test_the_checker_sees_a_lazy_import(tmp_path):
    (tmp_path / "kdlib" / "book").mkdir(parents=True)
    f = tmp_path / "kdlib" / "book" / "x.py"
    f.write_text("def f():\n    from ..executors import LocalExecutor\n")
    global KDLIB
    saved, KDLIB = KDLIB, tmp_path / "kdlib"
    try:
        assert "kdlib.executors" in imported_modules(f)
    finally:
        KDLIB = saved


def test_importing_the_book_wing_loads_no_training_module():
    code = ("import importlib, pkgutil, sys, kdlib.book as b\n"
            "for m in pkgutil.iter_modules(b.__path__):\n"
            "    importlib.import_module(f'kdlib.book.{m.name}')\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[-1] in {sorted(TRAINING)!r} and m.startswith('kdlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_no_import_circle_between_the_executors():
    assert not any(m.startswith("kdlib.executors") for m in imported_modules(KDLIB / "jobs.py"))
    assert not any(m.startswith("kdlib.executors") for m in imported_modules(KDLIB / "executors_ray.py"))
