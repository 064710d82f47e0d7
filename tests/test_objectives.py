"""KD objectives by name: Decoupled KD against a hand-worked case and the authors' own formula, Hinton's KD
unchanged bit for bit, bad names and arguments refused, and run hashes that do not move for Hinton runs."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from kdlib import load_study
from kdlib.arms import DistillationArm, TeacherLogits, Batch, build_arm, kd_loss
from kdlib.config import ConfigError
from kdlib.objectives import OBJECTIVES, check_objective, dkd
from kdlib.store import config_hash


@pytest.fixture(scope="module")
def study():
    return load_study()


def test_the_registry_holds_hinton_and_dkd():
    assert OBJECTIVES.names() == ["dkd", "hinton"]
    assert check_objective("dkd") == {"alpha": 1.0, "beta": 8.0}  # the authors' defaults (mdistiller CFG.DKD)
    assert check_objective("hinton") == {}


# ------------------------------------------------------------------------------------------ DKD
def test_dkd_hand_computed_three_classes():
    """T = 2, teacher logits 2 ln [4, 3, 1], so softmax(z_t / T) = [1/2, 3/8, 1/8]; a uniform student
    (1/3 each). Two examples, labels 0 and 2:

    label 0: binary teacher [1/2, 1/2], student [1/3, 2/3]
             TCKD = 1/2 ln(3/2) + 1/2 ln(3/4) = 1/2 ln(9/8)                 = 0.0588915
             non-target teacher [3/8, 1/8] / (1/2) = [3/4, 1/4], student [1/2, 1/2]
             NCKD = 3/4 ln(3/2) + 1/4 ln(1/2)                              = 0.1308120
    label 2: binary teacher [1/8, 7/8], student [1/3, 2/3]
             TCKD = 1/8 ln(3/8) + 7/8 ln(21/16)                             = 0.1153383
             non-target teacher [1/2, 3/8] / (7/8) = [4/7, 3/7], student [1/2, 1/2]
             NCKD = 4/7 ln(8/7) + 3/7 ln(6/7)                               = 0.0102391
    batch means: TCKD = 0.0871149, NCKD = 0.0705256
    alpha = 1, beta = 8: KD term = T^2 (TCKD + 8 NCKD) = 4 x 0.6513194       = 2.6052777
    CE = ln 3 = 1.0986123; w = 0.5: loss = 0.5 ln 3 + 0.5 x 2.6052777       = 1.8519450
    """
    zt = 2 * torch.log(torch.tensor([[4.0, 3.0, 1.0], [4.0, 3.0, 1.0]], dtype=torch.float64))
    zs, y = torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 2])
    tckd = (0.5 * math.log(9 / 8) + (1 / 8 * math.log(3 / 8) + 7 / 8 * math.log(21 / 16))) / 2
    nckd = ((3 / 4 * math.log(3 / 2) + 1 / 4 * math.log(1 / 2)) + (4 / 7 * math.log(8 / 7) + 3 / 7 * math.log(6 / 7))) / 2
    assert (tckd, nckd) == pytest.approx((0.0871149, 0.0705256), abs=1e-7)
    terms = dkd(zs, zt, y, 2.0, alpha=1.0, beta=8.0)
    assert terms["tckd"][0] == 4.0 and terms["nckd"][0] == 32.0  # alpha T^2, beta T^2
    assert terms["tckd"][1].item() == pytest.approx(tckd, rel=1e-12)
    assert terms["nckd"][1].item() == pytest.approx(nckd, rel=1e-12)
    loss = kd_loss(zs, zt, y, 0.5, 2.0, objective="dkd", objective_args={"alpha": 1.0, "beta": 8.0})
    assert loss.item() == pytest.approx(1.8519450, abs=1e-7)
    assert loss.item() == pytest.approx(0.5 * math.log(3) + 0.5 * 4 * (tckd + 8 * nckd), rel=1e-12)


def authors_dkd(logits_student, logits_teacher, target, alpha, beta, temperature):
    """mdistiller/distillers/DKD.py `dkd_loss` (megvii-research/mdistiller), as written there: probabilities
    summed under masks, the log of the binary student distribution, the target pushed out of the non-target
    softmax by subtracting 1000, KL summed and divided by the batch size."""
    gt_mask = torch.zeros_like(logits_student).scatter_(1, target.unsqueeze(1), 1).bool()
    other_mask = torch.ones_like(logits_student).scatter_(1, target.unsqueeze(1), 0).bool()

    def cat_mask(t):
        return torch.cat([(t * gt_mask).sum(1, keepdims=True), (t * other_mask).sum(1, keepdims=True)], dim=1)

    pred_student = cat_mask(F.softmax(logits_student / temperature, dim=1))
    pred_teacher = cat_mask(F.softmax(logits_teacher / temperature, dim=1))
    tckd = F.kl_div(torch.log(pred_student), pred_teacher, reduction="sum") * temperature ** 2 / target.shape[0]
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * temperature ** 2 / target.shape[0]
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("temperature,alpha,beta,classes", [(4.0, 1.0, 8.0, 10), (1.0, 0.5, 2.0, 5), (2.5, 2.0, 0.0, 3)])
def test_dkd_equals_the_authors_formula(temperature, alpha, beta, classes):
    g = torch.Generator().manual_seed(classes)
    zs = (3 * torch.randn(32, classes, generator=g, dtype=torch.float64)).requires_grad_(True)
    zt = 3 * torch.randn(32, classes, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (32,), generator=g)
    args = {"alpha": alpha, "beta": beta}
    ours = kd_loss(zs, zt, y, 1.0, temperature, objective="dkd", objective_args=args)  # w = 1: the KD term alone
    ref = authors_dkd(zs, zt, y, alpha, beta, temperature)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    g_ours, = torch.autograd.grad(ours, zs)
    g_ref, = torch.autograd.grad(ref, zs)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-8, atol=1e-12)


def test_dkd_decomposes_hintons_kl():
    """The DKD paper's identity, per example: KL(p_t || p_s) = TCKD + (1 - p_t[target]) NCKD."""
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        zs, zt = torch.randn(1, 6, generator=g, dtype=torch.float64), torch.randn(1, 6, generator=g, dtype=torch.float64)
        y = torch.randint(0, 6, (1,), generator=g)
        terms = dkd(zs, zt, y, 2.0, alpha=1.0, beta=1.0)
        kl = OBJECTIVES.get("hinton")(zs, zt, y, 2.0)["kd"][1]
        p_target = torch.softmax(zt / 2.0, 1)[0, y]
        assert kl.item() == pytest.approx((terms["tckd"][1] + (1 - p_target) * terms["nckd"][1]).item(), rel=1e-10)


def test_dkd_stays_finite_where_the_target_takes_all_the_mass():
    """p_target = 1 in floating point: the authors' log(1 - p_target) is -inf; log-sum-exp keeps it finite."""
    zs = torch.tensor([[300.0, 0.0, 0.0]], requires_grad=True)
    zt, y = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([0])
    assert not torch.isfinite(authors_dkd(zs, zt, y, 1.0, 8.0, 1.0))
    loss = kd_loss(zs, zt, y, 0.9, 1.0, objective="dkd")
    grad, = torch.autograd.grad(loss, zs)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_dkd_weight_zero_is_exactly_cross_entropy():
    zs, zt, y = torch.randn(8, 4), torch.randn(8, 4) * 10, torch.randint(0, 4, (8,))
    assert torch.equal(kd_loss(zs, zt, y, 0.0, 4.0, objective="dkd"), F.cross_entropy(zs, y))


# ------------------------------------------------------------------------------------------ Hinton
def _old_kd_terms(z_s, z_t, y, w, temperature, label_smoothing):
    """kdlib.arms._kd_terms as it was before objectives had names (commit 5a8b758)."""
    ce = F.cross_entropy(z_s, y, label_smoothing=label_smoothing)
    kl = F.kl_div(F.log_softmax(z_s / temperature, 1), F.log_softmax(z_t / temperature, 1),
                  reduction="batchmean", log_target=True)
    return (1.0 - w) * ce + w * temperature ** 2 * kl, ce, kl


@pytest.mark.parametrize("w,temperature,smoothing", [(0.9, 4.0, 0.0), (0.1, 4.0, 0.0), (0.7, 3.0, 0.1), (1.0, 1.0, 0.0)])
def test_hinton_is_the_old_loss_bit_for_bit(w, temperature, smoothing):
    g = torch.Generator().manual_seed(int(10 * w + temperature))
    z = torch.randn(64, 10, generator=g) * 3
    table = torch.randn(100, 10, generator=g) * 5  # the teacher's logits of 100 training examples
    idx, y = torch.randint(0, 100, (64,), generator=g), torch.randint(0, 10, (64,), generator=g)
    arm = DistillationArm(w, temperature, TeacherLogits(), label_smoothing=smoothing)
    arm.bind(None, None, teacher_logits=table)
    zs_new, zs_old = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    total, terms = arm.loss(zs_new, Batch(None, y, idx))
    old_total, old_ce, old_kl = _old_kd_terms(zs_old, table[idx], y, w, temperature, smoothing)
    assert list(terms) == ["ce", "kd"]  # the names the epoch logs have always had
    assert torch.equal(total, old_total) and torch.equal(terms["ce"], old_ce) and torch.equal(terms["kd"], old_kl)
    assert torch.equal(torch.autograd.grad(total, zs_new)[0], torch.autograd.grad(old_total, zs_old)[0])


# ------------------------------------------------------------------------------------------ validation
def test_bad_objectives_and_arguments_are_refused_naming_them(study):
    with pytest.raises(ConfigError, match=r"setup 'digits-mlp-standard': unknown KD objective 'fitnets'; allowed: dkd, hinton"):
        study.setup("digits-mlp-standard", "cpu", objective="fitnets")
    with pytest.raises(ConfigError, match=r"objective_args.beta of KD objective 'dkd' must be a finite number >= 0, got -1"):
        study.setup("digits-mlp-standard", "cpu", objective="dkd", objective_args={"beta": -1})
    with pytest.raises(ConfigError, match=r"KD objective 'dkd' has no argument\(s\) \['gamma'\]; it takes: alpha, beta"):
        study.setup("digits-mlp-standard", "cpu", objective="dkd", objective_args="{gamma: 1.0}")  # papermill's string form
    with pytest.raises(ConfigError, match=r"KD objective 'hinton' has no argument\(s\) \['alpha'\]; it takes: none"):
        study.setup("digits-mlp-standard", "cpu", objective_args={"alpha": 1.0})
    with pytest.raises(ConfigError, match=r"objective_args must be a mapping"):
        study.setup("digits-mlp-standard", "cpu", objective="dkd", objective_args="[1, 8]")
    with pytest.raises(ConfigError, match=r"objective_args.alpha .* got True"):
        check_objective("dkd", {"alpha": True})
    with pytest.raises(ConfigError, match=r"unknown KD objective 'dkd2'"):
        DistillationArm(0.9, 4.0, TeacherLogits(), objective="dkd2")


def test_a_study_file_objective_is_checked_when_the_file_is_read(tmp_path, study):
    text = study.path.read_text().replace("objective: hinton ", "objective: hintn ", 1)
    (tmp_path / "study.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"unknown KD objective 'hintn'; allowed: dkd, hinton"):
        load_study(tmp_path / "study.yaml").setup("digits-mlp-self", "cpu")


# ------------------------------------------------------------------------------------------ hashes
def test_hinton_runs_keep_their_hashes_and_dkd_runs_differ(study):
    s = study.setup("digits-mlp-standard", "cpu")
    kd = s.run_config("kd", 0)
    assert (kd.objective, kd.objective_args) == ("hinton", {})
    # the run as configured before objectives had names: same stored config, same hash (pinned from then)
    assert replace(kd, objective=None, objective_args=None).hash == kd.hash == "efc5a573537573d1"
    assert s.run_config("rcd", 0).hash == "ccb29f09dd4b4c4b"
    assert "objective" not in kd.to_dict() and "objective_args" not in kd.to_dict()
    d = study.setup("digits-mlp-standard", "cpu", objective="dkd")
    for arm in ("teacher", "control"):  # shared with the Hinton entries: the objective is not theirs
        assert d.run_config(arm, 0).hash == s.run_config(arm, 0).hash and d.run_config(arm, 0).objective is None
    dkd_kd = d.run_config("kd", 0)
    assert dkd_kd.hash != kd.hash and d.run_config("rcd", 0).hash != s.run_config("rcd", 0).hash
    assert dkd_kd.to_dict()["objective_args"] == {"alpha": 1.0, "beta": 8.0}
    assert config_hash(dkd_kd.to_dict()) == dkd_kd.hash  # what the store checks against the folder's name
    # the defaults spelled out, and an integer for a float, are the same run; another beta is another
    spelled = study.setup("digits-mlp-standard", "cpu", objective="dkd", objective_args={"alpha": 1, "beta": 8})
    assert spelled.run_config("kd", 0).hash == dkd_kd.hash
    other = study.setup("digits-mlp-standard", "cpu", objective="dkd", objective_args={"beta": 2.0})
    assert other.run_config("kd", 0).hash != dkd_kd.hash
    assert dkd_kd.label == "digits-mlp-standard/kd w0.9 dkd/seed0" and kd.label == "digits-mlp-standard/kd w0.9/seed0"


def test_the_arm_follows_the_runs_objective(study):
    d = study.setup("digits-mlp-standard", "smoke", objective="dkd", objective_args={"beta": 2.0})
    for arm in ("kd", "rcd"):
        a = build_arm(d.run_config(arm, 0), 10, 10)
        assert (a.objective, a.objective_args) == ("dkd", {"alpha": 1.0, "beta": 2.0})


def test_the_cpu_plan_runs_dkd_under_the_papers_controls(study):
    """The DKD entry: control, kd and rcd (both with DKD) at both readings of alpha, the cpu seed count, on the
    teachers and controls of the Hinton entry it is based on; and the smoke plan runs it end to end."""
    entry = next(e for e in study.plan("cpu") if e.id == "digits-mlp-standard-dkd")
    cfg, base = study.entry_setup("cpu", entry), study.setup(entry.setup, "cpu")
    assert cfg.objective == "dkd" and cfg.kd_weights == base.kd_weights == (0.9, 0.1)
    assert cfg.n_seeds == study.scale_info("cpu")["n_seeds"] and cfg.noise_variants == ("unit_fixed",)
    shared = {r.hash for r in base.runs() if r.arm in ("teacher", "control")}
    assert {r.hash for r in cfg.runs() if r.arm in ("teacher", "control")} == shared
    assert any(e.params.get("objective") == "dkd" for e in study.plan("smoke"))
