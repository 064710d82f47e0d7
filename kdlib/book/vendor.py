"""Vendored JavaScript so the book works offline: plotly.js (from the plotly package), require.js, the
ipywidgets HTML manager and MathJax (from the npm registry, fetched once with `npm pack`)."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..paths import REPO_ROOT

VENDOR = REPO_ROOT / "book" / "_vendor"
NPM = {"requirejs@2.3.8": {"package/require.js": "require.min.js"},
       "@jupyter-widgets/html-manager@1.0.15": {"package/dist/": "widgets/"},
       "mathjax@3.2.2": {"package/es5/tex-chtml.js": "mathjax/tex-chtml.js",
                         "package/es5/output/chtml/": "mathjax/output/chtml/",
                         "package/es5/input/tex/extensions/": "mathjax/input/tex/extensions/",
                         "package/es5/ui/": "mathjax/ui/", "package/es5/a11y/": "mathjax/a11y/"}}
SKIP = (".map", "embed.js", "libembed-amd.js")  # source maps and the non-AMD bundles are not loaded
REQUIRED = ("plotly.min.js", "require.min.js", "widgets/embed-amd.js", "mathjax/tex-chtml.js")


def missing(folder: Path = VENDOR) -> list[str]:
    return [f for f in REQUIRED if not (folder / f).is_file()]


def ensure(folder: Path = VENDOR) -> Path:
    """Fill `folder` with the vendored files that are missing; raise with a hint if npm is unavailable."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "plotly.min.js").is_file():
        import plotly

        shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
    todo = [spec for spec, files in NPM.items()
            if any(not (folder / dst.rstrip("/")).exists() for dst in files.values())]
    if not todo:
        return folder
    if shutil.which("npm") is None:
        raise RuntimeError(f"npm is needed once to vendor {todo} into {folder} (apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", *todo], cwd=tmp, check=True, capture_output=True)
        for tgz in Path(tmp).glob("*.tgz"):
            spec = next(s for s in todo if tgz.name.startswith(s.lstrip("@").replace("/", "-").split("@")[0]))
            with tarfile.open(tgz) as tar:
                for member in tar.getmembers():
                    for src, dst in NPM[spec].items():
                        if member.name.endswith(SKIP):
                            continue
                        if member.isfile() and (member.name == src or (src.endswith("/") and member.name.startswith(src))):
                            target = folder / (dst + member.name[len(src):] if src.endswith("/") else dst)
                            target.parent.mkdir(parents=True, exist_ok=True)
                            with tar.extractfile(member) as fsrc, open(target, "wb") as fdst:
                                shutil.copyfileobj(fsrc, fdst)
    if missing(folder):
        raise RuntimeError(f"vendoring failed, still missing: {missing(folder)}")
    return folder
