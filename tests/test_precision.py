"""`train.precision`: fp32 (every stored run) or bf16 autocast with channels-last images on the CPU.
fp32 leaves every hash as it was; bf16 runs repeat bit for bit and say what they trained in; the tiny
ResNets whose channels-last backward once crashed train; a CPU without bf16 units is named at start."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kdlib.train as train_mod
from kdlib import load_study
from kdlib.config import ConfigError, ModelSpec
from kdlib.models import build_model, n_params
from kdlib.runner import execute_run
from kdlib.train import autocast, bf16_warning, precision_used
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def study():
    return load_study()


def test_fp32_is_the_default_and_leaves_every_hash_as_it_was(study):
    default = study.setup("cifar10-mid-self", "mid")
    fp32 = study.setup("cifar10-mid-self", "mid", precision="fp32")
    bf16 = study.setup("cifar10-mid-self", "mid", precision="bf16")
    assert default.train["precision"] == "fp32"
    for arm in ("teacher", "control", "kd", "rcd"):
        a, b, c = (s.run_config(arm, 3) for s in (default, fp32, bf16))
        assert a.hash == b.hash and "precision" not in a.to_dict()["train"]  # stored configs as before
        assert c.hash != a.hash and c.to_dict()["train"]["precision"] == "bf16"
    # a bf16 student distils from the bf16 teacher, not from the fp32 one
    assert bf16.run_config("kd", 3).teacher_hash == bf16.run_config("teacher", 3).hash


def test_an_unknown_precision_is_refused_naming_the_allowed_ones(study):
    with pytest.raises(ConfigError, match=r"unknown train.precision 'fp16'; allowed: fp32, bf16"):
        study.setup("digits-mlp-self", "smoke", precision="fp16")


def _lenet_bf16(study, **kw):
    return study.setup("mnist5k-lenet-self", "smoke", n_seeds=1, precision="bf16", **kw)


def test_bf16_runs_repeat_bit_for_bit_and_record_what_they_trained_in(study):
    setup = _lenet_bf16(study)
    a, b = (execute_run(setup.teacher_run(0), "cpu") for _ in range(2))
    assert a.outputs["test_logits"].tobytes() == b.outputs["test_logits"].tobytes()
    assert all(torch.equal(x, y) for x, y in zip(a.model_state.values(), b.model_state.values()))
    assert a.provenance["precision"].startswith("bf16 autocast, channels-last (CPU")
    fp32 = execute_run(study.setup("mnist5k-lenet-self", "smoke", n_seeds=1).teacher_run(0), "cpu")
    assert fp32.provenance["precision"] == "fp32 (CPU)"
    assert fp32.outputs["test_logits"].tobytes() != a.outputs["test_logits"].tobytes()  # not vacuous
    # a student, from the stored teacher, repeats too
    kd = [execute_run(setup.run_config("kd", 0), "cpu", a.teacher_artifacts()) for _ in range(2)]
    assert kd[0].outputs["test_logits"].tobytes() == kd[1].outputs["test_logits"].tobytes()


def test_bf16_augmented_kd_runs_the_live_teacher_in_channels_last(study):
    """Augmented kd runs the teacher on every batch: in bf16 both models take channels-last inputs."""
    setup = _lenet_bf16(study, epochs=1)
    seen = []
    real = train_mod.random_crop_flip

    def spy(x, gen, pad=4):
        out = real(x, gen, pad)
        seen.append(out.shape)
        return out

    from kdlib.data import load_dataset
    from kdlib.arms import build_arm

    data = load_dataset(setup.dataset, **setup.data_args)
    teacher = execute_run(setup.teacher_run(0), "cpu")
    t_model = build_model(setup.teacher, data.input_shape, data.n_classes, 0)
    t_model.load_state_dict(teacher.model_state)
    cfg = setup.with_changes(train={**setup.train, "augment": True}).run_config("kd", 0)
    arm = build_arm(cfg, len(data.y_train), data.n_classes)
    assert arm.needs_teacher_model
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "random_crop_flip", spy)
        res = train_mod.train(cfg, data, arm, "cpu", teacher_model=t_model)
    assert seen and np.isfinite(res.epoch_log[-1]["loss"])
    assert t_model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("size", [32, 64])
def test_tiny_resnets_train_in_channels_last_bf16(width, size):
    """ResNet-18 at tiny widths once crashed in its channels-last backward on the CPU (torch < 2.14)."""
    model = build_model("resnet18", (3, size, size), 10, 0, width=width).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, size, size).contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with autocast(torch.device("cpu"), "bf16"):
        out = model(x)
        loss = F.cross_entropy(out, torch.arange(4))
    assert out.dtype == torch.bfloat16
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()


def test_a_cpu_without_bf16_units_is_named_at_start(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(train_mod, "cpu_bf16_units", lambda: None)
    note = bf16_warning(cpu, ["fp32", "bf16"], slowdown=lambda: 7.74)
    assert "without AMX or AVX512-BF16" in note and "ran 7.7x slower in bf16 here" in note

    def unasked():
        raise AssertionError("the probe runs only where bf16 is emulated and asked for")
    assert bf16_warning(cpu, ["fp32"], unasked) is None and bf16_warning(cuda, ["bf16"], unasked) is None
    assert precision_used(cpu, "bf16", True) == "bf16 autocast, channels-last (CPU, no bf16 units)"
    monkeypatch.setattr(train_mod, "cpu_bf16_units", lambda: "AMX")
    assert bf16_warning(cpu, ["bf16"], unasked) is None
    assert precision_used(cpu, "bf16", False) == "bf16 autocast (CPU, AMX)"
    assert precision_used(cuda, "fp32", True) == "bf16 autocast, channels-last (CUDA)"  # CUDA: bf16 as before


def test_the_bf16_probe_gives_a_ratio_of_two_timings_on_one_thread(monkeypatch):
    threads = []
    real = train_mod.cpu_threads

    def spy(*a):
        threads.append(True)
        return real(*a)
    monkeypatch.setattr(train_mod, "cpu_threads", spy)
    rng = torch.random.get_rng_state()
    ratio = train_mod.bf16_slowdown(repeats=1)
    assert threads and math.isfinite(ratio) and ratio > 0
    assert torch.equal(rng, torch.random.get_rng_state())  # a probe at start-up leaves the random stream alone


def test_airbench_cnn_shapes_and_size():
    m = build_model("airbench_cnn", (3, 32, 32), 10, 0)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert n_params(m) == 24 * 3 * 4 + 24 + 9 * (24 * 64 + 64 * 64 + 64 * 128 + 128 * 128 * 3) + 2 * 2 * (64 + 128 + 128) + 128 * 10 + 10
    a, b = (build_model("airbench_cnn", (3, 32, 32), 10, 7) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ConfigError, match="at least 9 pixels"):
        build_model("airbench_cnn", (3, 8, 8), 10, 0)


# ---------------------------------------------------------------- the full scale's recipe: crop padding, lookahead, whitening
def test_recipe_options_leave_every_hash_as_it_was_at_their_defaults(study):
    base = study.setup("cifar10-mid-self", "mid")
    for key, default, other in (("crop_pad", 4, 2), ("lookahead", False, True)):
        same, changed = study.setup("cifar10-mid-self", "mid", **{key: default}), study.setup("cifar10-mid-self", "mid", **{key: other})
        assert same.run_config("kd", 1).hash == base.run_config("kd", 1).hash and key not in base.run_config("kd", 1).to_dict()["train"]
        assert changed.run_config("kd", 1).hash != base.run_config("kd", 1).hash
    with pytest.raises(ConfigError, match=r"train.crop_pad .* must be an integer in \[0, 16\], got 20"):
        study.setup("cifar10-mid-self", "mid", crop_pad=20)
    with pytest.raises(ConfigError, match="train.lookahead must be true or false, got 'yes'"):
        study.setup("cifar10-mid-self", "mid", lookahead="yes")


def test_lookahead_moves_the_weights_to_their_average_by_hand():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    la = train_mod.Lookahead(model, total=10)
    with torch.no_grad():
        model.weight.fill_(3.0)
    la.step(model, 4)  # not a multiple of 5: nothing happens
    assert model.weight.item() == 3.0
    la.step(model, 5)
    decay = 0.95 ** 5 * 0.5 ** 3
    expected = 1.0 + (3.0 - 1.0) * (1 - decay)
    assert model.weight.item() == pytest.approx(expected) and la.ema["weight"].item() == pytest.approx(expected)
    with torch.no_grad():
        model.weight.fill_(10.0)
    la.step(model, 7, final=True)  # the end: the model takes the average, whatever it drifted to
    assert model.weight.item() == pytest.approx(expected)


def test_whitening_stem_whitens_the_training_patches_and_stays_frozen(study):
    x = torch.randn(400, 3, 32, 32) * torch.tensor([1.0, 2.0, 0.5])[None, :, None, None]
    m = build_model("airbench_cnn", (3, 32, 32), 10, 0, whiten=True)
    m.init_from_data(x)
    w = m.stem[0].weight
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    out = patches @ w[:12].reshape(12, -1).T.double()
    assert torch.allclose(out.T @ out / len(out), torch.eye(12, dtype=torch.double), atol=1e-2)  # whitened
    assert torch.equal(w[12:], -w[:12]) and not w.requires_grad
    with pytest.raises(ConfigError, match="whiten needs stem = 24"):
        build_model("airbench_cnn", (3, 32, 32), 10, 0, whiten=True, stem=16)
    # trained: the whitening filters are those of its own training data and never move; the bias does
    setup = study.setup("cifar10-full-self", "smoke", n_seeds=1, lookahead=True, crop_pad=2, epochs=3, batch_size=50)
    setup = setup.with_changes(teacher=ModelSpec("airbench_cnn", {"widths": [8, 16, 16], "whiten": True}),
                               student=ModelSpec("airbench_cnn", {"widths": [8, 16, 16], "whiten": True}))
    from kdlib.arms import build_arm
    from kdlib.data import load_dataset

    shared_file("cifar10-jpeg.tar.gz")
    data = load_dataset(setup.dataset, **setup.data_args)
    cfg = setup.teacher_run(0)
    res = train_mod.train(cfg, data, build_arm(cfg, len(data.y_train), data.n_classes), "cpu")
    fresh = build_model(cfg.model, data.input_shape, data.n_classes, cfg.init_seed)
    fresh.init_from_data(data.x_train)
    assert torch.equal(res.model.stem[0].weight, fresh.stem[0].weight)
    assert not torch.equal(res.model.stem[0].bias, fresh.stem[0].bias)


def test_airbench_schedule_by_hand():
    from kdlib.train import lr_at

    assert lr_at(0, 100, 20, 1.5, "airbench") == pytest.approx(0.3)  # 0.2 x base at the start
    assert lr_at(10, 100, 20, 1.5, "airbench") == pytest.approx(1.5 * 0.6)  # halfway up
    assert lr_at(20, 100, 20, 1.5, "airbench") == pytest.approx(1.5)  # the peak
    assert lr_at(100, 100, 20, 1.5, "airbench") == pytest.approx(1.5 * 0.07)  # 0.07 x base at the end


def test_norm_bias_lr_scale_puts_the_batch_norm_biases_in_their_own_group(study):
    base = study.setup("cifar10-mid-self", "mid")
    scaled = study.setup("cifar10-mid-self", "mid", norm_bias_lr_scale=64.0)
    assert scaled.run_config("teacher", 0).hash != base.run_config("teacher", 0).hash
    assert study.setup("cifar10-mid-self", "mid", norm_bias_lr_scale=1.0).run_config("teacher", 0).hash == \
        base.run_config("teacher", 0).hash
    with pytest.raises(ConfigError, match="train.norm_bias_lr_scale must be a number > 0, got 0"):
        study.setup("cifar10-mid-self", "mid", norm_bias_lr_scale=0)
    model = build_model("airbench_cnn", (3, 32, 32), 10, 0, bn_scale=False)
    t = {**scaled.train}
    opt = train_mod.make_optimizer(list(model.parameters()), t, train_mod.norm_biases(model))
    plain, biases = opt.param_groups
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in biases["params"]} == {id(m.bias) for m in bn}
    assert biases["lr_scale"] == 64.0 and biases["weight_decay"] == pytest.approx(t["weight_decay"] / 64)
    assert plain["lr_scale"] == 1.0 and plain["weight_decay"] == t["weight_decay"]
    assert not any(m.weight.requires_grad for m in bn)  # bn_scale=False: no learned batch-norm scale
    # at the default there is one group, as before the option existed
    assert len(train_mod.make_optimizer(list(model.parameters()), base.train, train_mod.norm_biases(model)).param_groups) == 1


def test_airbench_head_scale_multiplies_the_logits():
    a = build_model("airbench_cnn", (3, 32, 32), 10, 0)
    b = build_model("airbench_cnn", (3, 32, 32), 10, 0, head_scale=1 / 9)
    x = torch.randn(3, 3, 32, 32)
    a.eval(), b.eval()
    assert torch.allclose(b(x), a(x) / 9, atol=1e-6)
