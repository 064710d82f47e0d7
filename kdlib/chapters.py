"""`python -m kdlib.chapters`: execute one chapter with new parameters, after checking them (names, the
setup they resolve to, its data and models, the device) so a bad value stops here, not in the notebook.

    python -m kdlib.chapters setup out.ipynb -p setup digits-mlp-self -p kd_weight 0.5 -p rcd_variants '[permuted]'
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

from . import yamlread
from .book.notebooks import PARAMETERS, check_names, execute, setup_overrides


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
        out = Path(args.output)
        if out.is_dir() or out.suffix != ".ipynb":
            raise ValueError(f"output {args.output!r} must be a notebook file to write (NAME.ipynb), not a folder")
        if not out.resolve().parent.is_dir():
            raise ValueError(f"output {args.output!r}: its folder {out.resolve().parent} does not exist")
        for key in ("train_missing",):
            if key in params and not isinstance(params[key], bool):
                raise ValueError(f"parameter {key} must be true or false, got {params[key]!r}")
        from .studyfile import load_study as _load

        _study = _load(params.get("study_file"))
        for key in ("scale", "book_scale"):
            if params.get(key) is not None:
                _study.check_scale(params[key])
        shipped = params.get("shipped") or []
        if not isinstance(shipped, list):
            raise ValueError(f"parameter shipped must be a list of scales, got {shipped!r}")
        for s in shipped:
            _study.check_scale(s)
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
