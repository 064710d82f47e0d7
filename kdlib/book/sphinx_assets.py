"""A Sphinx extension for the book's pages: each inline script once.

sphinx-thebe (loaded by Jupyter Book whether or not thebe is used) and sphinx-togglebutton add their
inline configuration scripts again on every read phase, so each page declared `const THEBE_JS_URL` twice
and threw "Identifier 'THEBE_JS_URL' has already been declared". Identical scripts are dropped here.
"""
from __future__ import annotations


def _key(js) -> tuple:
    attrs = getattr(js, "attributes", {}) or {}
    # an inline script's file name is None or "" depending on who added it
    return (getattr(js, "filename", str(js)) or "", tuple(sorted((k, str(v)) for k, v in attrs.items())))


def unique_scripts(scripts: list) -> list:
    """`scripts` in order, each (file and attributes, inline body included) once."""
    seen, out = set(), []
    for js in scripts:
        k = _key(js)
        if k not in seen:
            seen.add(k)
            out.append(js)
    return out


def _page_context(app, pagename, templatename, context, doctree):
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])


def setup(app):
    app.connect("html-page-context", _page_context, priority=900)  # after the extensions that add scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
