"""Config validation, hashing and the seed pairing of the arms."""
import pytest

from kdlib import ConfigError, load_study
from kdlib.config import check_alpha, check_n_seeds, check_temperature


@pytest.fixture(scope="module")
def study():
    return load_study()


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x", None])
def test_alpha_outside_unit_interval(bad):
    with pytest.raises(ConfigError, match=r"alpha"):
        check_alpha(bad)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "hot"])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ConfigError, match="temperature"):
        check_temperature(bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_seed_count(bad):
    with pytest.raises(ConfigError, match="seeds"):
        check_n_seeds(bad)


def test_errors_name_the_bad_value_and_the_allowed_ones(study):
    with pytest.raises(ValueError, match=r"unknown setup 'nope'.*allowed: .*digits-mlp-self"):
        study.setup("nope", "cpu")
    with pytest.raises(ConfigError, match=r"unknown scale 'huge'; allowed: smoke, cpu, paper"):
        study.setup("digits-mlp-self", "huge")
    with pytest.raises(ConfigError, match=r"has no 'cpu' scale"):
        study.setup("cifar10-vgg19-self", "cpu")
    with pytest.raises(ConfigError, match=r"alpha must lie in \[0, 1\], got 1.2"):
        study.setup("digits-mlp-self", "cpu", alpha=1.2)
    with pytest.raises(ConfigError, match=r"temperature must be a finite number > 0, got 0"):
        study.setup("digits-mlp-self", "cpu", temperature=0)
    with pytest.raises(ConfigError, match=r"seeds must be an integer >= 1, got 0"):
        study.setup("digits-mlp-self", "cpu", n_seeds=0)
    with pytest.raises(ConfigError, match=r"unknown RCD noise 'pink'"):
        study.setup("digits-mlp-self", "cpu", rcd_noise="pink")
    with pytest.raises(ValueError, match=r"unknown distillation variant 'magic'.*attention, fitnets, logit"):
        study.setup("digits-mlp-self", "cpu", variant="magic")
    with pytest.raises(ConfigError, match=r"unknown override\(s\) \['colour'\]"):
        study.setup("digits-mlp-self", "cpu", colour="red")
    with pytest.raises(ConfigError, match=r"train.epochs must be an integer >= 1, got 0"):
        study.setup("digits-mlp-self", "cpu", epochs=0)
    with pytest.raises(ConfigError, match=r"warmup_epochs must be an integer in \[0, epochs = 30\), got 30"):
        study.setup("digits-mlp-self", "cpu", warmup_epochs=30)
    with pytest.raises(ConfigError, match=r"train.lr must be a number > 0"):
        study.setup("digits-mlp-self", "cpu", lr=0)
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lbfgs'"):
        study.setup("digits-mlp-self", "cpu", optimizer="lbfgs")
    with pytest.raises(ConfigError, match=r"unknown arm 'student'"):
        study.setup("digits-mlp-self", "cpu").run("student", 0)


def test_unknown_dataset_and_model_in_a_study_file(tmp_path):
    from kdlib.setups import load_study as load

    base = ("scales: {{cpu: {{n_seeds: 2}}}}\nsetups:\n  s:\n    kind: self\n    modality: image\n"
            "    dataset: {ds}\n    teacher: {{model: {m}}}\n    scales: {{cpu: {{}}}}\n")
    p = tmp_path / "study.yaml"
    p.write_text(base.format(ds="imagenet", m="mlp"))
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; allowed: .*cifar10.*digits"):
        load(p).setup("s", "cpu")
    p.write_text(base.format(ds="digits", m="resnet1000"))
    with pytest.raises(ValueError, match=r"unknown model 'resnet1000'; allowed: .*mlp"):
        load(p).setup("s", "cpu")


def test_pairing_of_seeds(study):
    s = study.setup("digits-mlp-self", "cpu")
    t, c, k, r = (s.run(a, 3) for a in ("teacher", "control", "kd", "rcd"))
    # self-distillation: every student starts from the teacher's own initial weights ...
    assert t.init_seed == c.init_seed == k.init_seed == r.init_seed
    # ... and sees one data order, different from the teacher's
    assert c.order_seed == k.order_seed == r.order_seed != t.order_seed
    assert r.noise_seed is not None and k.noise_seed is None
    assert c.teacher_hash == k.teacher_hash == t.hash
    # seeds differ across seed indices
    assert s.run("teacher", 4).init_seed != t.init_seed
    std = study.setup("digits-mlp-standard", "cpu").run("control", 3)
    assert std.init_seed != study.setup("digits-mlp-standard", "cpu").run("teacher", 3).init_seed


def test_hash_covers_exactly_what_changes_a_run(study):
    s = study.setup("digits-mlp-self", "cpu")
    s2 = study.setup("digits-mlp-self", "cpu", alpha=0.5, temperature=8)
    # teachers and controls do not depend on alpha / T: shared across a sweep
    assert s.run("teacher", 0).hash == s2.run("teacher", 0).hash
    assert s.run("control", 0).hash == s2.run("control", 0).hash
    assert s.run("kd", 0).hash != s2.run("kd", 0).hash
    assert s.run("kd", 0).hash == study.setup("digits-mlp-self", "cpu").run("kd", 0).hash
    assert s.run("rcd", 0, "permuted").hash != s.run("rcd", 0).hash
    longer = study.setup("digits-mlp-self", "cpu", epochs=31)
    assert longer.run("teacher", 0).hash != s.run("teacher", 0).hash


def test_runs_order_teachers_first_and_rcd_variants(study):
    s = study.setup("digits-mlp-self", "smoke", rcd_variants=["permuted", "unit_fixed"])
    runs = s.runs()
    assert [r.arm for r in runs[:5]] == ["teacher", "control", "kd", "rcd", "rcd"]
    assert [r.rcd_noise for r in runs[3:5]] == ["unit_fixed", "permuted"]  # main noise first, no duplicate
    assert len(runs) == 2 * 5


def test_plans_reference_known_setups(study):
    for scale in study.scales:
        for entry in study.plan(scale):
            study.setup(entry.setup, scale, **entry.params)
    assert len({study.setup(e.setup, "cpu").modality for e in study.plan("cpu")}) >= 3
