"""The chapters' parameters: declared in one place, unknown ones refused before anything loads or trains,
lists and mappings accepted as the strings papermill passes."""
import nbformat
import papermill as pm
import pytest

from kdlib.book.notebooks import NOTEBOOKS, PARAMETERS, ParameterError, check_parameters, execute, to_ipynb
from kdlib.chapters import main


@pytest.mark.parametrize("chapter", sorted(PARAMETERS))
def test_declared_parameters_match_the_notebooks(chapter, tmp_path):
    nb = to_ipynb(NOTEBOOKS / f"{chapter}.py", tmp_path / f"{chapter}.ipynb")
    assert set(pm.inspect_notebook(str(nb))) == set(PARAMETERS[chapter])


def test_check_parameters_names_the_unknown_one():
    before = {"In", "Out"}
    check_parameters({"In": 1, "Out": 2, "scale": "cpu", "_private": 3}, before, "gpu_plan")
    with pytest.raises(ParameterError, match=r"chapter 'setup' has no parameter\(s\) \['alpah'\]; it takes: .*'alpha'"):
        check_parameters({"In": 1, "alpah": 0.5}, before, "setup")


def test_a_chapter_refuses_an_unknown_parameter_before_loading_anything(tmp_path):
    src = to_ipynb(NOTEBOOKS / "setup.py", tmp_path / "setup.ipynb")
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), parameters={"alpah": 0.5, "results_dir": str(tmp_path)},
                            kernel_name="python3", progress_bar=False)
    assert "has no parameter(s)" in str(e.value) and "alpah" in str(e.value)
    assert not (tmp_path / "runs").exists()  # nothing was loaded or trained
    with pytest.raises(ParameterError, match="alpah"):  # the driver's own execution checks first
        execute("setup", tmp_path / "x.ipynb", {"alpah": 0.5})


def test_rerun_command_checks_names_and_values_before_papermill(tmp_path, capsys):
    out = tmp_path / "o.ipynb"
    assert main(["setup", str(out), "-p", "alpah", "0.5"]) == 2
    assert "has no parameter(s) ['alpah']" in capsys.readouterr().err
    assert main(["setup", str(out), "-p", "scale", "smoke", "-p", "kd_weight", "1.5"]) == 2
    assert "must lie in [0, 1], got 1.5" in capsys.readouterr().err
    assert main(["setup", str(out), "-p", "scale", "smoke", "-p", "variant", "fitnets", "-p", "variant_args",
                 "{student_layer: nope, teacher_layer: features.3}", "-p", "setup", "mnist5k-lenet-standard"]) == 2
    assert "no module named 'nope'" in capsys.readouterr().err
    assert main(["setup", str(out), "-p", "scale", "smoke", "-p", "device", "tpu"]) == 2
    assert "unknown device 'tpu'; allowed: auto, cpu, cuda" in capsys.readouterr().err
    assert not out.exists()


def test_gpu_plan_chapter_executes(tmp_path):
    execute("gpu_plan", tmp_path / "g.ipynb", {"scale": "cpu"})
    nb = nbformat.read(tmp_path / "g.ipynb", as_version=4)
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("data", {}).get("text/html", ""))
                   for c in nb.cells for o in c.get("outputs", []))
    assert "cifar10-resnet18-self" in text and "Whole plan" in text


def test_the_rerun_command_a_chapter_shows_resolves_to_its_own_runs():
    """The command in a chapter's "Rerun this chapter" box, parsed as the chapter command parses it, gives the
    same setup (every run hash) as the chapter; and its CSV has one row per run with the entry named."""
    import shlex

    import pandas as pd

    from kdlib import load_study
    from kdlib.book.setup_chapter import SetupView
    from kdlib.chapters import _parse_value

    study = load_study()
    overrides = {"objective": "ls", "objective_args": {"weight": 10.0}, "temperature": 2.0}
    cfg = study.setup("digits-mlp-standard", "cpu", **overrides)
    results = pd.DataFrame({"setup": ["s"], "arm": ["kd"], "seed": [0], "kd_weight": [0.9], "rcd_noise": [None],
                            "is_main": [True], "hash": ["h"], "teacher_hash": ["t"], "accuracy": [0.9], "agreement": [0.8]})
    view = SetupView(cfg=cfg, entry_id="digits-mlp-standard-ls", results_folder=None, store=None, results=results,
                     overrides=overrides)
    command, papermill = view.rerun_commands()
    words = shlex.split(command)
    assert words[:5] == ["python", "-m", "kdlib.chapters", "setup", "digits-mlp-standard-ls.ipynb"]
    params = {words[i + 1]: _parse_value(words[i + 2]) for i in range(5, len(words), 3)}
    assert params.pop("setup") == "digits-mlp-standard" and params.pop("scale") == "cpu"
    assert params.pop("entry_id") == "digits-mlp-standard-ls"
    again = study.setup("digits-mlp-standard", "cpu", **params)
    assert [r.hash for r in again.runs()] == [r.hash for r in cfg.runs()]
    assert "-y 'objective_args: {weight: 10.0}'" in papermill and "papermill notebooks/setup.ipynb" in papermill
    csv = view.runs_csv()
    assert list(csv.columns[:4]) == ["entry", "arm", "seed", "kd_weight"] and "accuracy" in csv and "is_main" not in csv
