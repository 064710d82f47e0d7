"""The book's chapters as parameterised notebooks: their parameters, the check that refuses unknown ones,
and `python -m kdlib.chapters`, which validates a rerun's parameters and then calls papermill.

    python -m kdlib.chapters setup out.ipynb -p setup digits-mlp-self -p kd_weight 0.5 -p rcd_variants '[permuted]'

A notebook records the names defined before its parameters cell; right after papermill's injected
cell, `check_parameters` compares the names now defined with the declared ones and stops, naming any
unknown one (papermill itself only warns, and the chapter would silently use its default).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import yaml

from . import yamlread
from .paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"

# Every parameter of every chapter (what the parameters cell of notebooks/<name>.py declares;
# tests/test_chapters.py checks the two agree).
COMMON = ("scale", "results_dir", "study_file", "book_scale")
PARAMETERS = {
    "setup": COMMON + ("entry_id", "setup", "n_seeds", "kd_weight", "alpha", "kd_weight_variants", "temperature",
                       "epochs", "rcd_noise", "rcd_variants", "variant", "variant_args", "objective", "objective_args",
                       "student_args", "backdoor", "recipe", "device", "train_missing"),
    "summary": COMMON + ("shipped",),
    "claims": COMMON + ("shipped",),
    "appendix": COMMON + ("shipped",),
    "gpu_plan": COMMON,
    "explorer": ("scale", "results_dir", "study_file"),
}


class ParameterError(ValueError):
    """A chapter was given a parameter it does not take."""


def check_parameters(namespace: dict, before: set, chapter: str) -> None:
    """Refuse names defined by the injected-parameters cell that the chapter does not declare (modules,
    classes and functions the chapter has imported by now are not parameters)."""
    allowed = set(PARAMETERS[chapter])
    unknown = sorted(k for k in set(namespace) - set(before) - allowed
                     if not k.startswith("_") and not callable(namespace[k]) and not isinstance(namespace[k], ModuleType))
    if unknown:
        raise ParameterError(f"chapter {chapter!r} has no parameter(s) {unknown}; it takes: {sorted(allowed)}")


def check_names(chapter: str, params: dict) -> None:
    if chapter not in PARAMETERS:
        raise ParameterError(f"unknown chapter {chapter!r}; allowed: {', '.join(PARAMETERS)}")
    unknown = sorted(set(params) - set(PARAMETERS[chapter]))
    if unknown:
        raise ParameterError(f"chapter {chapter!r} has no parameter(s) {unknown}; it takes: {sorted(PARAMETERS[chapter])}")


def setup_overrides(params: dict) -> dict:
    """The setup parameters of a chapter that are set (None means: the study file's value)."""
    keys = set(PARAMETERS["setup"]) - set(COMMON) - {"entry_id", "setup", "device", "train_missing"}
    return {k: v for k, v in params.items() if k in keys and v is not None}


def to_ipynb(source: Path, target: Path) -> Path:
    import jupytext

    jupytext.write(jupytext.read(source), target, fmt="ipynb")
    return target


def kernel_options() -> dict:
    """nbclient options: kernels keep their own log quiet (no 'running over TCP without encryption' or
    'KeyboardInterrupt caught' per chapter); errors in a chapter still stop it and are reported."""
    return {"extra_arguments": ["--IPKernelApp.log_level=CRITICAL"]}


def execute(chapter: str, output: Path, parameters: dict, log_output: bool = False) -> None:
    """Execute notebooks/<chapter>.py with papermill into `output` (parameters checked first)."""
    import papermill as pm

    check_names(chapter, parameters)
    with tempfile.TemporaryDirectory() as tmp:
        src = to_ipynb(NOTEBOOKS / f"{chapter}.py", Path(tmp) / f"{chapter}.ipynb")
        pm.execute_notebook(str(src), str(output), parameters=parameters, kernel_name="python3", progress_bar=False,
                            cwd=str(REPO_ROOT), log_output=log_output, **kernel_options())


def _parse_value(text: str) -> Any:
    try:
        return yamlread.load(text)
    except yaml.YAMLError:
        return text


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdlib.chapters", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapter", help=f"one of: {', '.join(PARAMETERS)}")
    ap.add_argument("output", help="the executed notebook to write (.ipynb)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a parameter; values are read as YAML (numbers, lists like '[a, b]', mappings like '{k: v}')")
    args = ap.parse_args(argv)
    params = {k: _parse_value(v) for k, v in args.parameter}
    try:
        check_names(args.chapter, params)
        if args.chapter == "setup":
            from .preflight import resolve_plan
            from .studyfile import PlanEntry, load_study

            study = load_study(params.get("study_file"))
            scale = params.get("scale", "cpu")
            name = params.get("setup", "digits-mlp-self")
            resolve_plan(study, scale, [PlanEntry(params.get("entry_id") or name, name, setup_overrides(params))])
            from .train import resolve_device

            resolve_device(params.get("device", "auto"))
    except Exception as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    execute(args.chapter, Path(args.output), params, log_output=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
