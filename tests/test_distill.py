"""The KD loss against its formula and a numerical gradient; RCD targets carry no information."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2_contingency

from kdlib.config import ConfigError
from kdlib.distill import RCDTargets, attention_map, kd_loss


def test_kd_loss_equals_its_formula():
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    a, t = 0.7, 3.0
    ps, pt = torch.softmax(zs / t, 1), torch.softmax(zt / t, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    ce = -torch.log_softmax(zs, 1)[torch.arange(6), y].mean()
    assert kd_loss(zs, zt, y, a, t).item() == pytest.approx(((1 - a) * ce + a * t * t * kl).item(), rel=1e-6)


def test_alpha_zero_is_exactly_cross_entropy():
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
    # at alpha = 1 and identical logits the gradient vanishes
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    g, = torch.autograd.grad(kd_loss(z, z.detach(), y, 1.0, 2.0), z)
    assert g.abs().max() < 1e-12


def test_kd_loss_validates_parameters():
    z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="alpha"):
        kd_loss(z, z, y, 1.5, 4.0)
    with pytest.raises(ConfigError, match="temperature"):
        kd_loss(z, z, y, 0.5, -1.0)


@pytest.mark.parametrize("kind", ["unit_fixed", "unit_resampled", "teacher_scaled", "permuted"])
def test_rcd_targets_carry_no_information(kind):
    n, c = 6000, 5
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, c, (n,), generator=g)
    # an informative teacher: its argmax is the label 90 % of the time
    teacher = torch.randn(n, c, generator=g) + 4.0 * F.one_hot(labels, c) * (torch.rand(n, 1, generator=g) < 0.9)
    assert (teacher.argmax(1) == labels).float().mean() > 0.85
    rcd = RCDTargets(kind, n, c, seed=3, teacher_logits=teacher)
    noise = rcd(torch.arange(n))
    top = noise.argmax(1).numpy()
    for other in (labels.numpy(), teacher.argmax(1).numpy()):
        table = np.zeros((c, c))
        np.add.at(table, (top, other), 1)
        assert chi2_contingency(table).pvalue > 0.001
        assert abs((top == other).mean() - 1 / c) < 0.03
    again = rcd(torch.arange(n))
    assert torch.equal(noise, again) == (kind != "unit_resampled")
    if kind == "permuted":  # keeps each example's logit values, in a shuffled class order
        assert torch.equal(noise.sort(1).values, teacher.sort(1).values)
    if kind == "teacher_scaled":
        assert float(noise.std()) == pytest.approx(float(teacher.std()), rel=0.05)


def test_rcd_targets_are_seeded_and_validated():
    a = RCDTargets("unit_fixed", 10, 3, seed=1)(torch.arange(10))
    assert torch.equal(a, RCDTargets("unit_fixed", 10, 3, seed=1)(torch.arange(10)))
    assert not torch.equal(a, RCDTargets("unit_fixed", 10, 3, seed=2)(torch.arange(10)))
    with pytest.raises(ConfigError, match="needs the teacher"):
        RCDTargets("permuted", 10, 3, seed=1)
    with pytest.raises(ConfigError, match="unknown RCD noise"):
        RCDTargets("pink", 10, 3, seed=1)


def test_attention_map_hand():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0, 0, 0], f[0, 1, 1, 1] = 2.0, 2.0  # channel mean of squares: 2 at two positions
    np.testing.assert_allclose(attention_map(f).numpy(), [[2 ** -0.5, 0, 0, 2 ** -0.5]], rtol=1e-6)
