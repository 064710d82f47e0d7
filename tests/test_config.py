"""Config validation, hashing, the seed pairing of the arms, the study file and its recipes."""
import pytest

from kdlib import ConfigError, load_study
from kdlib.config import TRAIN_KEYS, check_kd_weight, check_n_seeds, check_temperature
from kdlib.studyfile import Study, as_list, as_mapping


@pytest.fixture(scope="module")
def study():
    return load_study()


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x", None, True, float("nan")])
def test_kd_weight_outside_unit_interval(bad):
    with pytest.raises(ConfigError, match=r"kd_weight \(the KD-term weight\)"):
        check_kd_weight(bad)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "hot"])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ConfigError, match="temperature"):
        check_temperature(bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_seed_count(bad):
    with pytest.raises(ConfigError, match="seeds"):
        check_n_seeds(bad)


def test_alpha_is_the_kd_weight(study):
    a = study.setup("digits-mlp-self", "cpu", alpha=0.3)
    assert a.kd_weight == 0.3 and a.run_config("kd", 0).kd_weight == 0.3
    assert a.run_config("kd", 0).hash == study.setup("digits-mlp-self", "cpu", kd_weight=0.3).run_config("kd", 0).hash
    with pytest.raises(ConfigError, match="name the same parameter"):
        study.setup("digits-mlp-self", "cpu", alpha=0.3, kd_weight=0.5)


def test_errors_name_the_bad_value_and_the_allowed_ones(study):
    with pytest.raises(ConfigError, match=r"unknown setup 'nope'; allowed: .*digits-mlp-self"):
        study.setup("nope", "cpu")
    with pytest.raises(ConfigError, match=r"unknown scale 'huge'; .* has: smoke, cpu, mid, full, paper"):
        study.setup("digits-mlp-self", "huge")
    with pytest.raises(ConfigError, match=r"has no 'cpu' scale"):
        study.setup("cifar10-vgg19-self", "cpu")
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\], got 1.2"):
        study.setup("digits-mlp-self", "cpu", kd_weight=1.2)
    with pytest.raises(ConfigError, match=r"kd_weight_variants .* must lie in \[0, 1\], got 2"):
        study.setup("digits-mlp-self", "cpu", kd_weight_variants=[0.1, 2])
    with pytest.raises(ConfigError, match=r"temperature must be a finite number > 0, got 0"):
        study.setup("digits-mlp-self", "cpu", temperature=0)
    with pytest.raises(ConfigError, match=r"seeds must be an integer >= 1, got 0"):
        study.setup("digits-mlp-self", "cpu", n_seeds=0)
    with pytest.raises(ConfigError, match=r"unknown RCD noise 'pink'"):
        study.setup("digits-mlp-self", "cpu", rcd_noise="pink")
    with pytest.raises(ValueError, match=r"unknown distillation variant 'magic'.*attention, fitnets, logit"):
        study.setup("digits-mlp-self", "cpu", variant="magic")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['colour'\]"):
        study.setup("digits-mlp-self", "cpu", colour="red")
    with pytest.raises(ConfigError, match=r"train.epochs must be an integer >= 1, got 0"):
        study.setup("digits-mlp-self", "cpu", epochs=0)
    with pytest.raises(ConfigError, match=r"warmup_epochs must be an integer in \[0, epochs = 60\), got 60"):
        study.setup("digits-mlp-self", "cpu", warmup_epochs=60)
    with pytest.raises(ConfigError, match=r"train.lr must be a number > 0"):
        study.setup("digits-mlp-self", "cpu", lr=0)
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lbfgs'"):
        study.setup("digits-mlp-self", "cpu", optimizer="lbfgs")
    with pytest.raises(ConfigError, match=r"unknown learning-rate schedule 'step'"):
        study.setup("digits-mlp-self", "cpu", schedule="step")
    with pytest.raises(ConfigError, match=r"unknown arm 'student'"):
        study.setup("digits-mlp-self", "cpu").run_config("student", 0)
    with pytest.raises(ConfigError, match=r"recipe for setup 'cifar10-resnet18-self' 'slow'; allowed: fast, authors"):
        study.setup("cifar10-resnet18-self", "paper", recipe="slow")
    with pytest.raises(ConfigError, match=r"offers no recipes"):
        study.setup("digits-mlp-self", "cpu", recipe="fast")


def _study_file(tmp_path, text):
    p = tmp_path / "study.yaml"
    p.write_text(text)
    return p


BASE = ("defaults:\n  kd_weight: 0.9\n  train: {{epochs: 1, batch_size: 8, optimizer: sgd, lr: 0.1, momentum: 0.9, nesterov: true,\n"
        "    weight_decay: 0, schedule: cosine, warmup_epochs: 0, label_smoothing: 0, augment: false, eval_batch_size: 8}}\n"
        "scales: {{cpu: {{n_seeds: 2}}}}\nsetups:\n  s:\n    kind: self\n    modality: image\n"
        "    dataset: {ds}\n    teacher: {{model: {m}}}\n    scales: {{cpu: {{}}}}\n")


def test_unknown_dataset_and_model_in_a_study_file(tmp_path):
    from kdlib.studyfile import load_study as load

    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; allowed: .*cifar10.*digits"):
        load(_study_file(tmp_path, BASE.format(ds="imagenet", m="mlp"))).setup("s", "cpu")
    with pytest.raises(ValueError, match=r"unknown model 'resnet1000'; allowed: .*mlp"):
        load(_study_file(tmp_path, BASE.format(ds="digits", m="resnet1000"))).setup("s", "cpu")


def test_study_file_errors_name_the_file_and_key(tmp_path):
    from kdlib.studyfile import load_study as load

    p = _study_file(tmp_path, "setups:\n  s: {kind: self\n")
    with pytest.raises(ConfigError, match=rf"(?s)study file {p} is not valid YAML: .*{p.name}.*line"):
        load(p)
    p = _study_file(tmp_path, "setups:\n  s: {kind: self, dataset: digits, modality: image}\n")
    with pytest.raises(ConfigError, match=rf"study file {p}: setup 's' has no `teacher:`"):
        load(p)
    with pytest.raises(ConfigError, match=r"study file .* not found"):
        load(tmp_path / "nope.yaml")
    p = _study_file(tmp_path, BASE.format(ds="digits", m="mlp").replace("n_seeds: 2", "n_seeds: 2, colour: 1"))
    with pytest.raises(ConfigError, match=r"scale 'cpu' has unknown key\(s\) \['colour'\]"):
        load(p)
    missing = BASE.format(ds="digits", m="mlp").replace(" eval_batch_size: 8", "")
    with pytest.raises(ConfigError, match=r"training option\(s\) \['eval_batch_size'\] have no value"):
        load(_study_file(tmp_path, missing)).setup("s", "cpu")


def test_pairing_of_seeds(study):
    s = study.setup("digits-mlp-self", "cpu")
    t, c, k, r = (s.run_config(a, 3) for a in ("teacher", "control", "kd", "rcd"))
    # self-distillation: every student starts from the teacher's own initial weights ...
    assert t.init_seed == c.init_seed == k.init_seed == r.init_seed
    # ... and sees one data order, different from the teacher's
    assert c.order_seed == k.order_seed == r.order_seed != t.order_seed
    assert r.noise_seed is not None and k.noise_seed is None
    assert c.teacher_hash == k.teacher_hash == t.hash
    assert s.run_config("teacher", 4).init_seed != t.init_seed
    std = study.setup("digits-mlp-standard", "cpu")
    assert std.run_config("control", 3).init_seed != std.run_config("teacher", 3).init_seed


def test_hash_covers_exactly_what_changes_a_run(study):
    s = study.setup("digits-mlp-self", "cpu")
    s2 = study.setup("digits-mlp-self", "cpu", kd_weight=0.5, temperature=8)
    # teachers and controls do not depend on the KD weight / T: shared across a sweep
    assert s.run_config("teacher", 0).hash == s2.run_config("teacher", 0).hash
    assert s.run_config("control", 0).hash == s2.run_config("control", 0).hash
    assert s.run_config("kd", 0).hash != s2.run_config("kd", 0).hash
    assert s.run_config("kd", 0).hash == study.setup("digits-mlp-self", "cpu").run_config("kd", 0).hash
    assert s.run_config("rcd", 0, "permuted").hash != s.run_config("rcd", 0).hash
    assert s.run_config("kd", 0, kd_weight=0.1).hash != s.run_config("kd", 0).hash
    assert study.setup("digits-mlp-self", "cpu", epochs=31).run_config("teacher", 0).hash != s.run_config("teacher", 0).hash
    # the setup's name is not part of the hash: identical teachers of two setups are one run
    a, b = study.setup("cifar10-mid-self", "mid"), study.setup("cifar10-mid-standard", "mid")
    assert a.run_config("teacher", 2).hash == b.run_config("teacher", 2).hash
    assert a.run_config("control", 2).hash != b.run_config("control", 2).hash


def test_runs_cover_every_kd_weight_and_noise(study):
    s = study.setup("digits-mlp-self", "smoke", rcd_variants=["permuted", "unit_fixed"], kd_weight_variants=[0.1, 0.9])
    assert s.kd_weights == (0.9, 0.1)  # main first, no duplicate
    runs = s.runs()
    assert [r.arm for r in runs[:8]] == ["teacher", "control", "kd", "rcd", "rcd", "kd", "rcd", "rcd"]
    assert [r.rcd_noise for r in runs[3:5]] == ["unit_fixed", "permuted"]
    assert [r.kd_weight for r in runs[2:8]] == [0.9, 0.9, 0.9, 0.1, 0.1, 0.1]
    assert len(runs) == 2 * 8 and len({r.hash for r in runs}) == 16


def test_every_plan_entry_resolves(study):
    for scale in study.scales:
        for entry in study.plan(scale):
            study.entry_setup(scale, entry)
    assert len({study.setup(e.setup, "cpu").modality for e in study.plan("cpu")}) >= 3


def test_paper_plan_covers_the_papers_scope(study):
    setups = [study.entry_setup("paper", e) for e in study.plan("paper")]
    assert len({e.setup for e in study.plan("paper")}) >= 12
    assert len({s.dataset for s in setups}) >= 7
    assert {s.modality for s in setups} >= {"image", "audio", "text"}
    archs = {(m.name, m.args.get("depth")) for s in setups for m in (s.teacher, s.student)}
    assert len(archs) >= 9
    assert {s.temperature for s in setups if s.name == "cifar10-resnet18-self"} >= {1.0, 2.0, 4.0, 8.0, 16.0}
    assert {w for s in setups if s.name == "cifar10-resnet18-self" for w in s.kd_weights} >= {0.1, 0.5, 0.9}
    assert {s.variant for s in setups} == {"logit", "fitnets", "attention"}
    assert len({s.student.args.get("depth") for s in setups if s.name == "cifar10-resnet56-resnet20"}) >= 4
    assert any(s.backdoor and s.modality == "text" for s in setups)
    assert all(s.provenance for s in setups)


def test_recipe_switch_changes_exactly_the_recipe(study):
    fast = study.setup("cifar10-resnet18-self", "paper", recipe="fast")
    authors = study.setup("cifar10-resnet18-self", "paper", recipe="authors")
    assert fast.recipe == "fast" and authors.recipe == "authors"
    changed = {k for k in TRAIN_KEYS if fast.train[k] != authors.train[k]}
    assert changed and changed <= set(study.recipes["fast-resnet"]) | set(study.recipes["authors-vision"])
    assert authors.train == {**study.defaults["train"], **study.recipes["authors-vision"]}
    f, a = fast.to_dict(), authors.to_dict()
    assert {k for k in f if f[k] != a[k]} == {"train", "recipe"}
    assert authors.train["lr"] == 0.001 and authors.train["epochs"] == 100 and not authors.train["augment"]
    assert study.setup("imdb-gpt2-self", "paper", recipe="authors").train["epochs"] == 200


def test_list_and_mapping_parameters_parse_yaml_strings(study):
    assert as_list("x", "permuted") == ["permuted"] and as_list("x", "[a, b]") == ["a", "b"]
    assert as_mapping("x", '{"hidden": [8]}') == {"hidden": [8]}
    assert as_mapping("x", "{student_layer: features.3, beta: 1.0}") == {"student_layer": "features.3", "beta": 1.0}
    with pytest.raises(ConfigError, match="must be a mapping"):
        as_mapping("student_args", "[1, 2]")
    s = study.setup("digits-mlp-standard", "cpu", rcd_variants="permuted", student_args='{"hidden": [8]}')
    assert s.rcd_variants == ("permuted",) and s.student.args == {"hidden": [8]}


def test_study_shape_errors():
    with pytest.raises(ConfigError, match="expected a mapping"):
        Study(["not", "a", "mapping"])


def _edited(tmp_path, old, new):
    text = load_study().path.read_text()
    assert old in text, old
    return _study_file(tmp_path, text.replace(old, new, 1))


# Study-file edits that used to pass silently or fail late; each is now refused when the file is read or
# the setup resolved, naming the bad value and what is allowed.
BAD_STUDY_EDITS = [
    ("primary: [[agreement, kd, control],", "primary: [[agreemnt, kd, control],", r"unknown metric 'agreemnt'; allowed: accuracy, loss"),
    ("primary: [[agreement, kd, control],", "primary: [[agreement, control, kd],", r"compares control with kd; allowed comparisons: kd control"),
    ("primary: [[agreement, kd, control],", "primary: [agreement, kd, control, [agreement, kd, control],", r"must be \[metric, arm_a, arm_b\]"),
    ("  temperature: 4.0 ", "  temperature: 2.0\n  temperature: 4.0 ", r"duplicate key 'temperature' \(first given on line \d+\)"),
    ("  base_seed: 0\n", "  base_seed: abc\n", r"base_seed must be an integer >= 0, got 'abc'"),
    ("    device: cuda\n", "    device: tpu\n", r"scale 'paper' has device 'tpu'; allowed: auto, cpu, cuda or cuda:N"),
    ("\nsetups:\n", "\nsetup:\n", r"unknown top-level key\(s\) \['setup'\]; allowed: \['book', 'defaults', 'recipes', 'scales', 'setups'\]"),
    ("{chapter: claims, title:", "{chapter: claim, title:", r"book part 'results' names chapter 'claim', but there is no notebooks/claim.py"),
]


@pytest.mark.parametrize("old,new,message", BAD_STUDY_EDITS, ids=[m[:24] for _, _, m in BAD_STUDY_EDITS])
def test_bad_study_file_edits_are_refused_naming_the_value(tmp_path, old, new, message):
    from kdlib.studyfile import load_study as load

    with pytest.raises(ConfigError, match=message):
        load(_edited(tmp_path, old, new)).setup("vowels-seqcnn-self", "smoke")


def test_numbers_yaml_1_1_reads_as_strings_are_numbers_with_the_same_hash(tmp_path, study):
    from kdlib.studyfile import load_study as load

    old = "smoke: {train: {epochs: 3, batch_size: 32, optimizer: adamw, lr: 0.003, weight_decay: 0.01}}"
    edited = load(_edited(tmp_path, old, old.replace("0.003", "3e-3").replace("0.01}", "1e-2}")))
    cfg, ref = edited.setup("vowels-seqcnn-self", "smoke"), study.setup("vowels-seqcnn-self", "smoke")
    assert cfg.train["lr"] == 0.003 and isinstance(cfg.train["weight_decay"], float)
    assert [r.hash for r in cfg.runs()] == [r.hash for r in ref.runs()]
    # a string from a caller (papermill -p) is converted too, and a non-number names its key
    assert study.setup("vowels-seqcnn-self", "smoke", lr="3e-3").run_config("kd", 0).hash == ref.run_config("kd", 0).hash
    with pytest.raises(ConfigError, match=r"train.weight_decay must be a number, got 'lots'"):
        study.setup("vowels-seqcnn-self", "smoke", weight_decay="lots")


def test_the_main_kd_weight_comes_from_the_study_file():
    import copy

    from kdlib import load_study

    study = copy.copy(load_study())
    study.defaults = {k: v for k, v in study.defaults.items() if k != "kd_weight"}
    with pytest.raises(ConfigError, match="has no kd_weight: the study file names the main reading"):
        study.setup("digits-mlp-self", "smoke")
    study.defaults = {**study.defaults, "kd_weight": 0.7}
    assert study.setup("digits-mlp-self", "smoke").kd_weight == 0.7
