"""The run plan's costs: a stored run counts as a measurement only for the kind of device it ran on, so
paper-scale runs computed on the CPU do not pass for GPU times."""
import math

from kdlib import load_study
from kdlib.book import gpu_plan
from kdlib.book.run_costs import run_seconds
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.store import RunStore


def _stored_cpu_teacher(tmp_path):
    cfg = load_study().setup("digits-mlp-self", "smoke", n_seeds=1, kd_weight_variants=[])
    jobs = [j for j in collect_jobs([("d", cfg)]) if j.cfg.arm == "teacher"]
    store = RunStore(tmp_path / "runs")
    LocalExecutor("cpu", workers=1).run(jobs, store)
    return cfg, jobs[0].cfg, store


def test_a_cpu_run_is_a_measurement_for_the_cpu_only(tmp_path):
    cfg, run, store = _stored_cpu_teacher(tmp_path)
    stored = float(store.provenance(run)["seconds"])
    assert run_seconds(run, cfg, {}, store, "cpu") == (stored, "measured")
    seconds, source = run_seconds(run, cfg, {}, store, "cuda")
    assert source == "estimated" and (math.isnan(seconds) or seconds != stored)


def test_the_gpu_plan_page_says_its_paper_runs_came_from_the_cpu(tmp_path, monkeypatch):
    _, _, store = _stored_cpu_teacher(tmp_path)

    class Folder:
        @staticmethod
        def of(study, scale):
            return type("F", (), {"existing_store": staticmethod(lambda: store)})

    monkeypatch.setattr(gpu_plan, "ResultsFolder", Folder)
    monkeypatch.setattr(gpu_plan, "latest_report", lambda: None)
    text = gpu_plan.gpu_status(load_study())
    assert "the 1 paper-scale runs in this checkout were computed on the CPU" in text
    assert "no chapter of the paper's setups is in this book" not in text


def test_the_gpu_plan_page_gives_one_total_with_its_definition():
    """The table's whole-plan total and the recipes note's "plan as listed" are the same figure; the wholesale
    recipe switches are labelled as such."""
    import re

    from kdlib import load_study
    from kdlib.book.gpu_plan import gpu_plan_table, recipes_note

    study = load_study()
    total = gpu_plan_table(study)[1]
    note = recipes_note(study)
    runs = re.search(r"\*\*Whole plan\*\*: (\d+) distinct runs", total).group(1)
    assert "The plan as listed (the table's total" in note and f"is {runs} distinct runs" in note
    assert "every entry on `fast`" in note and "every entry on `authors`" in note
