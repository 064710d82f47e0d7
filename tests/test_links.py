"""The book's ways between pages and what it leaves out of them: entry ids linked to their chapters (the
longest id first), chapters linked back to the verdicts whose evidence names them, short claim statements,
the full table of tests in words, ticks that do not print over each other, and executed notebooks without
this machine's paths."""
import html
import json
from pathlib import Path

import nbformat
import pandas as pd

from kdlib.book import formatting as show
from kdlib.book.build import book_relative, location_key, scrub_paths
from kdlib.book.claims import CLAIMS, SHORT, anchor, backlinks_html, claims_naming, evidence_html, linked_matrix
from kdlib.book.findings import spaced_ticks
from kdlib.paths import REPO_ROOT


def test_entry_ids_link_to_their_chapter_longest_first():
    text = "digits-mlp-standard-T16 (with digits-mlp-standard); digits-mlp-standardX is not one."
    out = show.link_entries(text, "cpu", ["digits-mlp-standard", "digits-mlp-standard-T16"])
    assert out.count("<a ") == 2
    assert '<a href="cpu/digits-mlp-standard-T16.html">' in out and '<a href="cpu/digits-mlp-standard.html">' in out
    assert "digits-mlp-standardX is not one" in out  # not a whole id
    assert show.link_entries(out, "cpu", ["digits-mlp-standard"]) == out  # linking twice changes nothing


def test_evidence_names_become_links_and_chapters_find_the_verdicts_that_name_them():
    columns = {"cpu, w=0.9": [{"id": "a-setup"}, {"id": "b-setup"}], "mid, w=0.9": [{"id": "c-setup"}]}
    texts = {("cpu, w=0.9", 1): "significant in a-setup, not in b-setup", ("cpu, w=0.9", 2): "a-setup: +1.0 points",
             ("mid, w=0.9", 1): "c-setup <2> & more"}
    matrix = pd.DataFrame({"cpu, w=0.9": {1: "supported", 2: "not supported"}, "mid, w=0.9": {1: "supported", 2: "x"}})
    assert '<a href="mid/c-setup.html">' in evidence_html("mid, w=0.9", texts[("mid, w=0.9", 1)], columns)
    assert "&lt;2&gt; &amp; more" in evidence_html("mid, w=0.9", texts[("mid, w=0.9", 1)], columns)  # text stays text
    naming = claims_naming(columns, texts, matrix)
    assert naming[("cpu", "a-setup")] == [(1, "cpu, w=0.9", "supported"), (2, "cpu, w=0.9", "not supported")]
    assert naming[("cpu", "b-setup")] == [(1, "cpu, w=0.9", "supported")]
    assert ("mid", "a-setup") not in naming  # an id is looked up in its own column only
    html = backlinks_html(naming[("cpu", "a-setup")])
    assert f'href="../claims.html#{anchor("cpu, w=0.9", 1)}"' in html and SHORT[2] in html
    assert "none" in backlinks_html([])


def test_the_verdict_table_names_claims_briefly_and_keeps_the_full_statement_on_hover():
    matrix = pd.DataFrame({"statement": [CLAIMS[k] for k in CLAIMS], "cpu, w=0.9": "supported",
                           "flips between readings": ""}, index=list(CLAIMS))
    cells = linked_matrix(matrix)["statement"]
    for k, cell in cells.items():
        assert html.escape(SHORT[k]) in cell and 'title="' in cell
        assert len(SHORT[k]) <= 52  # two lines of the statement column at 1000 px (the browser test measures it)


def test_the_full_table_of_tests_says_its_numbers_in_words():
    t = pd.DataFrame({"family": ["primary"], "comparison": ["kd > control"], "metric": ["neg_agreement"], "n": [10],
                      "n_nonzero": [8], "n_excluded": [0], "mean_a": [0.31234], "sem_a": [0.0123], "mean_b": [0.25],
                      "sem_b": [0.01], "mean_diff": [0.06234], "W": [36.0], "p": [0.0039], "p_by": [0.0117],
                      "rbc": [1.0], "significant": [True], "min_p": [0.0039], "reachable": [True]})
    html = show.full_tests_html(t)
    assert "A-: agreement where teacher wrong" in html and "neg_agreement" not in html
    assert "primary: kd &gt; control" in html and "10 (8, 0)" in html and "0.3123 ± 0.012" in html
    assert "0.0039" in html and "0.012" in html and "+1.00" in html and "0.0039 (yes)" in html


def test_the_full_table_of_tests_says_a_value_every_row_shares_once_above_it():
    row = {"family": "primary", "comparison": "kd > control", "metric": "agreement", "n": 10, "n_nonzero": 10,
           "n_excluded": 0, "mean_a": 0.7, "sem_a": 0.01, "mean_b": 0.6, "sem_b": 0.01, "mean_diff": 0.1, "W": 55.0,
           "p": 0.00098, "p_by": 0.0027, "rbc": 1.0, "significant": True, "min_p": 0.00098, "reachable": True}
    same = pd.DataFrame([row, {**row, "metric": "accuracy"}])
    html_same = show.full_tests_html(same)
    lead, table = html_same.split("<table", 1)
    assert "10 (10, 0)" in lead and "9.8e-04 (yes)" in lead
    assert "n (≠ 0, excl.)" not in table and "smallest p" not in table and "10 (10, 0)" not in table
    # one seed excluded in one row: the counts differ, so they keep their column; the smallest p still shared
    mixed = pd.DataFrame([row, {**row, "metric": "accuracy", "n": 9, "n_nonzero": 9, "n_excluded": 1}])
    lead, table = show.full_tests_html(mixed).split("<table", 1)
    assert "n (≠ 0, excl.)" in table and "10 (10, 0)" in table and "9 (9, 1)" in table
    assert "9.8e-04 (yes)" in lead and "smallest p" not in table


def test_forest_ticks_never_print_over_each_other():
    from kdlib.book.findings import _symlog

    ticks = spaced_ticks([-10, -5, -2, -1, 0, 1, 2, 5, 10, 20])
    assert {-1, 0, 1, 5} <= set(ticks) and not {2, 10} & set(ticks)  # 2 and 10 sit too near 1 and 5 on this span
    span = _symlog(20) - _symlog(-10)
    assert all(_symlog(b) - _symlog(a) >= 0.14 * span - 1e-9 for a, b in zip(ticks, ticks[1:]))
    assert spaced_ticks([-1, 0, 1]) == [-1, 0, 1]


def test_executed_notebooks_keep_no_machine_path(tmp_path):
    out = tmp_path / "book"
    results = out / "results" / "cpu"
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(f'results_dir = "{results}"\nstudy_file = "{REPO_ROOT / "study.yaml"}"'))
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text=f"170 runs from `{results}/runs`, in {out}.\n")]
    nb.metadata["papermill"] = {"input_path": "/tmp/tmpabc/setup.ipynb", "output_path": str(out / "book/generated/.x.1.tmp.ipynb"),
                                "parameters": {"results_dir": str(results)}}
    clean = scrub_paths(nb, out, out / "book" / "generated" / "cpu" / "x.ipynb")
    text = json.dumps(clean)
    assert str(tmp_path) not in text and str(REPO_ROOT) not in text and "/tmp/" not in text
    assert "170 runs from `results/cpu/runs`, in ." in text and 'study_file = \\"study.yaml\\"' in text
    assert clean.metadata["papermill"]["output_path"] == "book/generated/cpu/x.ipynb"
    assert book_relative(results, out) == "results/cpu" and book_relative("/elsewhere/r", out) == "/elsewhere/r"
    # staleness is still decided by the absolute folders: another folder with the same relative name differs
    assert location_key(results, REPO_ROOT / "study.yaml") != location_key(tmp_path / "results" / "cpu", REPO_ROOT / "study.yaml")
    # a sibling folder whose name starts like the book's is not rewritten
    assert str(Path(f"{out}2/x")) in json.dumps(scrub_paths(nbformat.from_dict(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [nbformat.v4.new_markdown_cell(f"{out}2/x")]}),
        out, out / "y.ipynb"))
