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
