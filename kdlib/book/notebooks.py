"""The book's chapters as parameterised notebooks: their parameters, the check that refuses unknown ones,
and their execution by papermill (`python -m kdlib.chapters` is the command line that validates a
rerun's parameters first).

A notebook records the names defined before its parameters cell; right after papermill's injected
cell, `check_parameters` compares the names now defined with the declared ones and stops, naming any
unknown one (papermill itself only warns, and the chapter would silently use its default).
"""
from __future__ import annotations

import ast
import functools
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from ..paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"

# Parameters that are not setup overrides: where a chapter reads from and writes to, and how it runs.
NOT_SETUP = ("scale", "results_dir", "study_file", "book_scale", "entry_id", "setup", "device", "train_missing")


@functools.cache
def declared_parameters(chapter: str) -> tuple[str, ...]:
    """The names the parameters cell of notebooks/<chapter>.py assigns, in order: the one list of a
    chapter's parameters (papermill injects values for exactly these)."""
    source = NOTEBOOKS / f"{chapter}.py"
    cells = re.split(r"^# %%", source.read_text(), flags=re.M)
    cell = next((c for c in cells if c.startswith(' tags=["parameters"]')), None)
    if cell is None:
        raise ParameterError(f"{source} has no cell tagged parameters")
    names = []
    for node in ast.parse(cell.split("\n", 1)[1]).body:
        if isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return tuple(dict.fromkeys(names))


class _Parameters(Mapping):
    """chapter name -> its declared parameters, for every notebook with a parameters cell (read once)."""

    @functools.cached_property
    def _chapters(self) -> list[str]:
        return sorted(p.stem for p in NOTEBOOKS.glob("*.py") if '# %% tags=["parameters"]' in p.read_text())

    def __getitem__(self, chapter: str) -> tuple[str, ...]:
        if chapter not in self._chapters:
            raise KeyError(chapter)
        return declared_parameters(chapter)

    def __iter__(self):
        return iter(self._chapters)

    def __len__(self) -> int:
        return len(self._chapters)


PARAMETERS = _Parameters()


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
    keys = set(PARAMETERS["setup"]) - set(NOT_SETUP)
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
