"""Fail before training, not after: a whole plan is checked up front and every problem is reported at once."""
import pytest

from kdlib import load_study
from kdlib.driver import main as driver_main
from kdlib.preflight import PreflightError, resolve_plan
from kdlib.store import RunStore
from kdlib.studyfile import PlanEntry


@pytest.fixture(scope="module")
def study():
    return load_study()


def test_every_problem_of_a_plan_is_reported_naming_the_entry(study):
    entries = study.plan("smoke") + [
        PlanEntry("bad-weight", "digits-mlp-self", {"kd_weight": 1.5}),
        PlanEntry("bad-layer", "mnist5k-lenet-standard", {"variant": "fitnets",
                                                          "variant_args": {"student_layer": "features.9", "teacher_layer": "features.3"}}),
        PlanEntry("bad-student", "digits-mlp-standard", {"student_args": {"hidden": [8], "colour": 1}}),
        PlanEntry("bad-backdoor", "mnist5k-lenet-standard", {"backdoor": {"target": 42}}),
        PlanEntry("text-patch", "imdb-textcnn-self", {"backdoor": {"patch": 3}}),
        PlanEntry("flip-digits", "vowels-seqcnn-self", {"augment": True}),
    ]
    with pytest.raises(PreflightError) as e:
        resolve_plan(study, "smoke", entries)
    msg = str(e.value)
    assert msg.startswith("6 problem(s) in the plan; nothing was trained")
    assert "entry 'bad-weight' (setup 'digits-mlp-self'): kd_weight (the KD-term weight) must lie in [0, 1], got 1.5" in msg
    assert "entry 'bad-layer'" in msg and "no module named 'features.9'" in msg
    assert "entry 'bad-student'" in msg and "colour" in msg
    assert "entry 'bad-backdoor'" in msg and "target must be a class index" in msg
    assert "entry 'text-patch'" in msg and "either an image `patch` or a text `token`" in msg
    assert "entry 'flip-digits'" in msg and "random crop and flip do not suit dataset 'japanese_vowels'" in msg


def test_driver_with_a_bad_last_entry_trains_nothing(tmp_path, capsys):
    text = (load_study().path.read_text()
            .replace("\n  cpu:\n", "\n      - {id: typo, setup: digits-mlp-self, params: {alpha: 1.5}}\n  cpu:\n", 1))
    path = tmp_path / "study.yaml"
    path.write_text(text)
    results = tmp_path / "results"
    assert "typo" in text
    rc = driver_main(["--scale", "smoke", "--study", str(path), "--results", str(results), "--no-build",
                      "--out", str(tmp_path / "book")])
    err = capsys.readouterr().err
    assert rc == 2 and "entry 'typo'" in err and "got 1.5" in err
    assert not (results / "runs").exists() or not RunStore(results / "runs").hashes()


def test_missing_data_is_reported_before_training(tmp_path, monkeypatch, study):
    monkeypatch.setenv("KDLIB_DATA", str(tmp_path))
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    entry = PlanEntry("svhn", "svhn-resnet18-self", {"data_args": {"download": False}})
    with pytest.raises(PreflightError, match=r"entry 'svhn'.*train_32x32.mat.*http"):
        resolve_plan(study, "smoke", [entry])


@pytest.mark.parametrize("argv,message", [
    (["--scale", "bogus"], "unknown scale 'bogus'"),
    (["--device", "gpu"], "unknown device 'gpu'"),
    (["--executor", "spark"], "unknown executor 'spark'"),
    (["--only", "nope"], "unknown plan entries ['nope']"),
    (["--workers", "0"], "--workers must be >= 1"),
])
def test_driver_options_are_checked_before_anything_runs(argv, message, tmp_path, capsys):
    rc = driver_main(argv + ["--results", str(tmp_path / "r"), "--out", str(tmp_path / "b"), "--no-build"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_list_shows_the_paper_plan_with_its_cost(capsys):
    assert driver_main(["--scale", "paper", "--list"]) == 0
    out = capsys.readouterr().out
    assert "24 entries, 13 setups, 7 datasets" in out and "(estimated)" in out
    for column in ("dataset", "teacher->student", "variant", "recipe", "per run", "provenance"):
        assert column in out
    assert "resnet56->resnet20" in out and "gpt2_classifier->gpt2_classifier" in out
