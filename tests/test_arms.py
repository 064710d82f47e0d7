"""The arms as objects: each loss term against its formula, what each arm needs from its teacher,
RCD noise that carries no information, and seeded feature-matching parts."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2_contingency

from kdlib import load_study
from kdlib.arms import (FEATURE_SCALE_EXAMPLES, AttentionTransfer, Batch, CrossEntropyArm, DistillationArm, FeatureHook,
                        FitNets, RCDNoise, TeacherLogits, attention_map, build_arm, kd_loss)
from kdlib.config import ConfigError


@pytest.fixture(scope="module")
def study():
    return load_study()


def test_kd_loss_equals_its_formula():
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    w, t = 0.7, 3.0
    ps, pt = torch.softmax(zs / t, 1), torch.softmax(zt / t, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    ce = -torch.log_softmax(zs, 1)[torch.arange(6), y].mean()
    assert kd_loss(zs, zt, y, w, t).item() == pytest.approx(((1 - w) * ce + w * t * t * kl).item(), rel=1e-6)


def test_weight_zero_is_exactly_cross_entropy():
    zs, zt, y = torch.randn(8, 4), torch.randn(8, 4) * 10, torch.randint(0, 4, (8,))
    assert torch.equal(kd_loss(zs, zt, y, 0.0, 4.0), F.cross_entropy(zs, y))
    zs.requires_grad_(True)
    g1, = torch.autograd.grad(kd_loss(zs, zt, y, 0.0, 4.0), zs)
    g2, = torch.autograd.grad(F.cross_entropy(zs, y), zs)
    assert torch.equal(g1, g2)


def test_kd_loss_gradient_numerically():
    zs = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    zt, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1])
    assert torch.autograd.gradcheck(lambda z: kd_loss(z, zt, y, 0.9, 4.0), (zs,))
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)  # w = 1, identical logits: no gradient
    g, = torch.autograd.grad(kd_loss(z, z.detach(), y, 1.0, 2.0), z)
    assert g.abs().max() < 1e-12


def test_cross_entropy_arm_terms():
    z, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    total, terms = CrossEntropyArm().loss(z, Batch(z, y, torch.arange(2)))
    hand = (np.log(1 + np.exp(-2.0)) + np.log(1 + np.exp(1.0))) / 2  # -log softmax of the true class
    assert total.item() == pytest.approx(hand, rel=1e-6) and set(terms) == {"ce"} and terms["ce"] is total


def test_distillation_arm_terms_hand_computed():
    """Two examples, two classes, T = 1, w = 0.5: every term worked out by hand."""
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # teacher logits of 3 training examples
    arm = DistillationArm(0.5, 1.0, TeacherLogits())
    arm.bind(None, None, teacher_logits=table)
    z, y, idx = torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]), torch.tensor([2, 0])
    total, terms = arm.loss(z, Batch(z, y, idx))
    ce = np.log(2.0)  # uniform student
    pt = np.exp([0.0, 2.0]) / np.exp([0.0, 2.0]).sum()  # teacher of example 2; example 0's teacher is uniform
    kl = (np.sum(pt * np.log(pt / 0.5)) + 0.0) / 2
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert terms["kd"].item() == pytest.approx(kl, rel=1e-6)
    assert total.item() == pytest.approx(0.5 * ce + 0.5 * kl, rel=1e-6)
    # the targets are the teacher's logits of the batch's own examples: the other pairing gives another loss
    _, swapped = arm.loss(z, Batch(z, y, idx.flip(0)))
    assert swapped["kd"].item() == pytest.approx(kl, rel=1e-6)  # same multiset of rows, same mean
    _, other = arm.loss(z, Batch(z, y, torch.tensor([1, 1])))
    assert other["kd"].item() != pytest.approx(kl)


def test_what_each_arm_needs_from_its_teacher(study):
    s = study.setup("mnist5k-lenet-standard", "smoke")
    need = lambda cfg: (build_arm(cfg, 10, 10).needs_teacher_logits, build_arm(cfg, 10, 10).needs_teacher_model)  # noqa: E731
    assert need(s.run_config("teacher", 0)) == (False, False)
    assert need(s.run_config("control", 0)) == (False, False)
    assert need(s.run_config("kd", 0)) == (True, False)
    assert need(s.run_config("rcd", 0)) == (False, False)
    assert need(s.run_config("rcd", 0, rcd_noise="permuted")) == (True, False)
    aug = study.setup("mnist5k-lenet-standard", "smoke", augment=True)
    assert need(aug.run_config("kd", 0)) == (False, True)  # augmented inputs: the live teacher
    assert need(aug.run_config("rcd", 0)) == (False, False)  # noise needs no teacher at all
    fit = study.setup("mnist5k-lenet-standard", "smoke", variant="fitnets",
                      variant_args={"student_layer": "features.3", "teacher_layer": "features.3"})
    assert need(fit.run_config("kd", 0)) == (False, True) and need(fit.run_config("rcd", 0)) == (False, True)
    with pytest.raises(ValueError, match="needs the teacher's training logits"):
        build_arm(s.run_config("kd", 0), 10, 10).bind(None, None)


@pytest.mark.parametrize("kind", ["unit_fixed", "unit_resampled", "teacher_scaled", "permuted"])
def test_rcd_targets_carry_no_information(kind):
    n, c = 6000, 5
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, c, (n,), generator=g)
    # an informative teacher: its argmax is the label 90 % of the time
    teacher = torch.randn(n, c, generator=g) + 4.0 * F.one_hot(labels, c) * (torch.rand(n, 1, generator=g) < 0.9)
    assert (teacher.argmax(1) == labels).float().mean() > 0.85
    rcd = RCDNoise(kind, n, c, seed=3)
    rcd.bind(None, teacher, "cpu")
    batch = Batch(None, None, torch.arange(n))
    noise = rcd(batch)
    top = noise.argmax(1).numpy()
    for other in (labels.numpy(), teacher.argmax(1).numpy()):
        table = np.zeros((c, c))
        np.add.at(table, (top, other), 1)
        assert chi2_contingency(table).pvalue > 0.001
        assert abs((top == other).mean() - 1 / c) < 0.03
    assert torch.equal(noise, rcd(batch)) == (kind != "unit_resampled")
    if kind == "permuted":  # keeps each example's logit values (its confidence profile), in a shuffled class order
        assert torch.equal(noise.sort(1).values, teacher.sort(1).values)
    if kind == "teacher_scaled":
        assert float(noise.std()) == pytest.approx(float(teacher.std()), rel=0.05)


def test_rcd_targets_are_seeded_and_validated():
    def draw(seed):
        r = RCDNoise("unit_fixed", 10, 3, seed=seed)
        r.bind(None, None, "cpu")
        return r(Batch(None, None, torch.arange(10)))

    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    with pytest.raises(ConfigError, match="needs the teacher"):
        RCDNoise("permuted", 10, 3, seed=1).bind(None, None, "cpu")


def test_attention_map_hand():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0, 0, 0], f[0, 1, 1, 1] = 2.0, 2.0  # channel mean of squares: 2 at two positions
    np.testing.assert_allclose(attention_map(f).numpy(), [[2 ** -0.5, 0, 0, 2 ** -0.5]], rtol=1e-6)


def _convnets():
    from kdlib.models import build_model

    return (build_model("lenet", (1, 16, 16), 4, 0, width=1.0), build_model("lenet", (1, 16, 16), 4, 1, width=2.0))


def test_feature_terms_hand_and_named():
    student, teacher = _convnets()
    x = torch.randn(3, 1, 16, 16)
    at = AttentionTransfer("features.4", "features.4", beta=10.0)
    assert at.attach(student, teacher, x, init_seed=0) == []
    student(x), teacher(x)
    fs, ft = at.hooks[0].output, at.hooks[1].output
    hand = 10.0 * (attention_map(fs) - attention_map(ft)).pow(2).mean()
    assert at.loss(torch.arange(3)).item() == pytest.approx(hand.item(), rel=1e-6)
    at.detach()
    fit = FitNets("features.3", "features.3", beta=2.0)
    params = fit.attach(student, teacher, x, init_seed=0)
    assert len(params) == 2  # the 1x1 regressor's weight and bias
    student(x), teacher(x)
    hand = 2.0 * F.mse_loss(fit.regressor(fit.hooks[0].output), fit.hooks[1].output)
    assert fit.loss(torch.arange(3)).item() == pytest.approx(hand.item(), rel=1e-6)
    fit.detach()
    with pytest.raises(ConfigError, match=r"no module named 'layer9'.*top-level modules: \['features', 'head'\]"):
        FitNets("layer9", "features.3").attach(student, teacher, x, init_seed=0)
    with pytest.raises(ConfigError, match="beta"):
        FitNets("features.3", "features.3", beta=-1)


def test_feature_regressor_is_seeded_by_the_run_not_the_process():
    student, teacher = _convnets()
    x = torch.randn(2, 1, 16, 16)
    weights = []
    for global_seed, noise_seed in ((1, None), (2, 123)):  # kd (no noise) and rcd, after different global draws
        torch.manual_seed(global_seed)
        torch.randn(100)
        fit = FitNets("features.3", "features.3")
        fit.attach(student, teacher, x, init_seed=7, noise_seed=noise_seed, n_examples=2)
        weights.append(fit.regressor.weight.detach().clone())
        fit.detach()
    assert torch.equal(weights[0], weights[1])  # kd and rcd of a seed start from the same regressor
    fit = FitNets("features.3", "features.3")
    fit.attach(student, teacher, x, init_seed=8)
    assert not torch.equal(fit.regressor.weight, weights[0])


@pytest.mark.parametrize("kind,fixed", [("unit_fixed", True), ("teacher_scaled", True), ("unit_resampled", False)])
def test_rcd_feature_noise_follows_rcd_noise(kind, fixed):
    student, teacher = _convnets()
    x = torch.randn(300, 1, 16, 16)
    fit = FitNets("features.3", "features.3")
    fit.attach(student, teacher, x, init_seed=0, noise_seed=5, noise=kind, n_examples=40)
    idx = torch.tensor([3, 7, 3])
    student(x[:3])
    first = fit.teacher_feature(idx)
    student(x[:3])
    again = fit.teacher_feature(idx)
    # fixed: the same example gets the same map at every step (and within a batch); resampled: fresh noise
    assert torch.equal(first, again) == fixed and torch.equal(first[0], first[2]) == fixed
    assert not torch.equal(first[0], first[1])


def test_rcd_feature_noise_scale_comes_from_the_examples_given():
    student, teacher = _convnets()
    x = torch.randn(300, 1, 16, 16)
    fit = FitNets("features.3", "features.3")
    fit.attach(student, teacher, x[:256], init_seed=0, noise_seed=5, noise="unit_fixed", n_examples=300)
    teacher.eval()
    with torch.no_grad():
        hook = FeatureHook(teacher, "features.3")
        teacher(x[:256])
        want = float(hook.output.float().std())
        hook.remove()
    assert fit.teacher_feature_std == pytest.approx(want, rel=1e-6)
    assert float(fit.fixed_noise.std()) == pytest.approx(want, rel=0.05) and len(fit.fixed_noise) == 300
    assert FEATURE_SCALE_EXAMPLES >= 100  # a scale from a handful of examples is noise itself


def test_rcd_feature_noise_rejects_what_it_cannot_follow():
    student, teacher = _convnets()
    x = torch.randn(4, 1, 16, 16)
    with pytest.raises(ConfigError, match="'permuted' has no feature-map form"):
        FitNets("features.3", "features.3").attach(student, teacher, x, init_seed=0, noise_seed=1, noise="permuted")
    with pytest.raises(ConfigError, match="number of training examples, got None"):
        FitNets("features.3", "features.3").attach(student, teacher, x, init_seed=0, noise_seed=1, noise="unit_fixed")
    with pytest.raises(ConfigError, match="'permuted' needs the teacher's own outputs"):  # refused when the study file is read
        load_study().setup("mnist5k-lenet-standard", "smoke", variant="fitnets", rcd_variants=["permuted"],
                           variant_args={"student_layer": "features.3", "teacher_layer": "features.3"})
