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


def test_list_says_when_its_bf16_costs_do_not_hold_on_this_cpu(capsys, monkeypatch):
    """The full scale's costs were measured where bf16 has its units; on a CPU without them its runs take
    several times longer, and the listing says so (with the probe's ratio)."""
    import kdlib.train as train_mod

    monkeypatch.setattr(train_mod, "bf16_slowdown", lambda: 7.74)
    monkeypatch.setattr(train_mod, "cpu_bf16_units", lambda: None)
    assert driver_main(["--scale", "full", "--list"]) == 0
    assert "ran 7.7x slower in bf16 here; the bf16 runs' costs above come from a CPU" in capsys.readouterr().out
    monkeypatch.setattr(train_mod, "cpu_bf16_units", lambda: "AVX512-BF16")
    assert driver_main(["--scale", "full", "--list"]) == 0
    assert "slower in bf16" not in capsys.readouterr().out
    monkeypatch.setattr(train_mod, "cpu_bf16_units", lambda: None)
    assert driver_main(["--scale", "smoke", "--list"]) == 0  # fp32 only: no note
    assert "slower in bf16" not in capsys.readouterr().out


def test_list_shows_the_paper_plan_with_its_cost(capsys):
    assert driver_main(["--scale", "paper", "--list"]) == 0
    out = capsys.readouterr().out
    assert "24 entries, 13 setups, 7 datasets" in out and "(estimated)" in out
    for column in ("dataset", "teacher->student", "variant", "recipe", "per run", "provenance"):
        assert column in out
    assert "resnet56->resnet20" in out and "gpt2_classifier->gpt2_classifier" in out


# ------------------------------------------------------------------ bad inputs named in one line (issue: store integrity, part 5)
def _study_with(tmp_path, old, new):
    from kdlib import load_study

    text = load_study().path.read_text()
    assert old in text
    (tmp_path / "study.yaml").write_text(text.replace(old, new, 1))
    return tmp_path / "study.yaml"


@pytest.mark.parametrize("entry,message", [
    ("      - [1, 2]", r"plan entry \[1, 2\] of scale 'smoke' must be a setup name or a mapping"),
    ("      - 42", r"plan entry 42 of scale 'smoke' must be a setup name or a mapping"),
    ("      - {setup: digits-mlp-self, params: [1, 2]}", r"params must be a mapping .* got \[1, 2\]"),
    ("      - {id: ../../../../escaped, setup: digits-mlp-self}", r"plan entry id '\.\./\.\./\.\./\.\./escaped' .* not a safe file name"),
])
def test_a_malformed_plan_entry_is_refused_naming_it(tmp_path, entry, message):
    from kdlib import load_study
    from kdlib.config import ConfigError

    path = _study_with(tmp_path, "    plan:\n      - digits-mlp-self\n", f"    plan:\n{entry}\n      - digits-mlp-self\n")
    with pytest.raises(ConfigError, match=message):
        load_study(path).plan("smoke")


def test_seeds_and_workers_have_a_stated_upper_bound(tmp_path, capsys):
    from kdlib import load_study
    from kdlib.config import ConfigError
    from kdlib.driver import main as driver_main

    study = load_study()
    assert study.limits == {"n_seeds": 100, "workers": 64}
    with pytest.raises(ConfigError, match=r"n_seeds 1000000 is above the study's limit of 100 .*defaults: limits: n_seeds"):
        study.setup("digits-mlp-self", "smoke", n_seeds=1000000)
    assert study.setup("digits-mlp-self", "smoke", n_seeds=100).n_seeds == 100
    assert driver_main(["--scale", "smoke", "--workers", "65", "--list"]) == 2
    assert "--workers 65 is above the study's limit of 64" in capsys.readouterr().err


def test_a_malformed_device_is_refused_in_one_line(capsys):
    from kdlib.driver import main as driver_main

    assert driver_main(["--scale", "smoke", "--device", "cuda:abc", "--list"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'cuda:abc'" in err and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["summary", "OUT.ipynb", "-p", "scale", "nonexistent"], "unknown scale 'nonexistent'"),
    (["setup", "OUT.ipynb", "-p", "train_missing", "maybe"], "parameter train_missing must be true or false, got 'maybe'"),
    (["summary", "DIR", "-p", "scale", "smoke"], "must be a notebook file to write"),
])
def test_the_chapter_command_refuses_bad_values_before_papermill(tmp_path, capsys, args, message):
    from kdlib.chapters import main as chapters_main

    (tmp_path / "DIR").mkdir()
    args = [str(tmp_path / a) if a in ("OUT.ipynb", "DIR") else a for a in args]
    assert chapters_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "OUT.ipynb").exists()


def test_a_full_disk_under_out_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    import errno
    import shutil

    from kdlib.book import build
    from kdlib.config import ConfigError

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copy", full)
    with pytest.raises(ConfigError, match=r"--out .*: the book's sources cannot be written there \(.*No space left"):
        build.assemble(tmp_path / "book-out")


def test_a_failed_html_build_leaves_the_previous_book_whole(tmp_path, monkeypatch):
    """The HTML is built into a staging folder: a build that fails (as one killed would) leaves the old
    _build/html as it was, and no staging folder behind."""
    import subprocess

    from kdlib.book import build

    old = tmp_path / "_build" / "html"
    old.mkdir(parents=True)
    (old / "index.html").write_text("the previous book")

    class Failed:
        returncode, stdout, stderr = 2, "", "boom"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(SystemExit, match="the previous book in .* is unchanged"):
        build.build_book(tmp_path)
    assert (old / "index.html").read_text() == "the previous book"
    assert not list((tmp_path / "_build").glob(".staging@*"))
