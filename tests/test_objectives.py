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
from kdlib.objectives import OBJECTIVES, check_objective, dist, dkd, ls, mse, nkd, standardise
from kdlib.store import config_hash


@pytest.fixture(scope="module")
def study():
    return load_study()


def test_the_registry_holds_hinton_dkd_and_the_later_objectives():
    assert OBJECTIVES.names() == ["dist", "dkd", "hinton", "ls", "mse", "nkd"]
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
    with pytest.raises(ConfigError, match=r"setup 'digits-mlp-standard': unknown KD objective 'fitnets'; allowed: dist, dkd, hinton, ls, mse, nkd"):
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
    with pytest.raises(ConfigError, match=r"unknown KD objective 'hintn'; allowed: dist, dkd, hinton, ls, mse, nkd"):
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


# ------------------------------------------------------------------------------------------ MSE, DIST, LS, NKD
# Each against a case worked by hand and against its authors' code, transcribed below as written there (the
# test's reference, not kdlib's implementation), on fixed random batches: values and gradients.
def authors_mse(logit_s, logit_t):
    """jhoon-oh/kd_data, code/image_classfication/tools/losses.py `mse_logit`."""
    return torch.nn.MSELoss()(logit_s, logit_t)


def authors_dist(z_s, z_t, beta, gamma, tau):
    """hunto/image_classification_sota, lib/models/losses/dist_kd.py `DIST.forward`."""
    def cosine_similarity(a, b, eps=1e-8):
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    def pearson_correlation(a, b, eps=1e-8):
        return cosine_similarity(a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1), eps)

    def inter_class_relation(y_s, y_t):
        return 1 - pearson_correlation(y_s, y_t).mean()

    def intra_class_relation(y_s, y_t):
        return inter_class_relation(y_s.transpose(0, 1), y_t.transpose(0, 1))

    y_s, y_t = (z_s / tau).softmax(dim=1), (z_t / tau).softmax(dim=1)
    return beta * tau ** 2 * inter_class_relation(y_s, y_t) + gamma * tau ** 2 * intra_class_relation(y_s, y_t)


def authors_ls(logits_student_in, logits_teacher_in, temperature):
    """sunshangquan/logit-standardization-KD, mdistiller/distillers/KD.py `normalize` and `kd_loss` with
    logit_stand = True."""
    def normalize(logit):
        mean = logit.mean(dim=-1, keepdims=True)
        stdv = logit.std(dim=-1, keepdims=True)
        return (logit - mean) / (1e-7 + stdv)

    log_pred_student = F.log_softmax(normalize(logits_student_in) / temperature, dim=1)
    pred_teacher = F.softmax(normalize(logits_teacher_in) / temperature, dim=1)
    return F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean() * temperature ** 2


def authors_nkd(logit_s, logit_t, gt_label, temp, gamma):
    """yzd-v/cls_KD, mmcls/models/dis_losses/nkd.py `NKDLoss.forward` (labels as a vector)."""
    label = gt_label.view(len(gt_label), 1)
    N, c = logit_s.shape
    s_i = F.log_softmax(logit_s, dim=1)
    t_i = F.softmax(logit_t, dim=1)
    s_t = torch.gather(s_i, 1, label)
    t_t = torch.gather(t_i, 1, label).detach()
    loss_t = - (t_t * s_t).mean()
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    logit_s = logit_s[mask].reshape(N, -1)
    logit_t = logit_t[mask].reshape(N, -1)
    S_i = F.log_softmax(logit_s / temp, dim=1)
    T_i = F.softmax(logit_t / temp, dim=1)
    loss_non = (T_i * S_i).sum(dim=1).mean()
    loss_non = - gamma * (temp ** 2) * loss_non
    return loss_t + loss_non


AUTHORS = {  # objective -> (the authors' loss of (z_s, z_t, y, T, args), argument sets to try)
    "mse": (lambda zs, zt, y, t, a: a["weight"] * authors_mse(zs, zt), [{"weight": 1.0}, {"weight": 0.5}]),
    "dist": (lambda zs, zt, y, t, a: authors_dist(zs, zt, a["beta"], a["gamma"], t),
             [{"beta": 1.0, "gamma": 1.0}, {"beta": 2.0, "gamma": 2.0}, {"beta": 0.0, "gamma": 3.0}]),
    "ls": (lambda zs, zt, y, t, a: a["weight"] * authors_ls(zs, zt, t), [{"weight": 1.0}, {"weight": 10.0}]),
    "nkd": (lambda zs, zt, y, t, a: authors_nkd(zs, zt, y, t, a["gamma"]), [{"gamma": 1.5}, {"gamma": 0.0}]),
}


@pytest.mark.parametrize("name", sorted(AUTHORS))
@pytest.mark.parametrize("temperature,classes,batch", [(4.0, 10, 32), (1.0, 5, 17), (2.0, 3, 2)])
def test_each_later_objective_equals_its_authors_code(name, temperature, classes, batch):
    """The KD term alone (w = 1) equals the authors' loss, value and gradient, on batches of fixed random
    logits, for the authors' defaults and other arguments."""
    ref, arg_sets = AUTHORS[name]
    g = torch.Generator().manual_seed(7 * classes + batch)
    for args in arg_sets:
        zs = (3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)).requires_grad_(True)
        zt = 3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)
        y = torch.randint(0, classes, (batch,), generator=g)
        ours = kd_loss(zs, zt, y, 1.0, temperature, objective=name, objective_args=args)
        theirs = ref(zs, zt, y, temperature, args)
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-10, abs=1e-12), (name, args)
        g_ours, = torch.autograd.grad(ours, zs)
        g_theirs, = torch.autograd.grad(theirs, zs)
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-8, atol=1e-12)


def test_mse_hand_computed():
    """Student 0, teacher [1, 2, 3]: the squared errors 1, 4, 9 averaged over the three classes = 14/3; with
    w = 0.25 and CE = ln 3: 0.75 ln 3 + 0.25 x 14/3."""
    zs, zt, y = torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), torch.tensor([1])
    assert mse(zs, zt, y, 4.0, weight=1.0)["mse"][1].item() == pytest.approx(14 / 3, rel=1e-12)
    loss = kd_loss(zs, zt, y, 0.25, 4.0, objective="mse")
    assert loss.item() == pytest.approx(0.75 * math.log(3) + 0.25 * 14 / 3, rel=1e-12)


def test_dist_hand_computed():
    """T = 1, two identical examples; the teacher's probabilities [1/2, 1/3, 1/6] (logits ln 3, ln 2, 0), the
    student's the reverse [1/6, 1/3, 1/2]. Centred rows (1/6, 0, -1/6) and (-1/6, 0, 1/6): Pearson -1, so
    inter = 1 - (-1) = 2. Each class column is constant over the batch: centred to 0, Pearson 0 / eps = 0, so
    intra = 1. DIST = beta 2 + gamma 1; with beta = 2, gamma = 3: 7."""
    zt = torch.log(torch.tensor([[3.0, 2.0, 1.0]] * 2, dtype=torch.float64))
    zs = torch.log(torch.tensor([[1.0, 2.0, 3.0]] * 2, dtype=torch.float64))
    terms = dist(zs, zt, torch.tensor([0, 1]), 1.0, beta=2.0, gamma=3.0)
    assert terms["inter"][1].item() == pytest.approx(2.0, abs=1e-6) and terms["intra"][1].item() == pytest.approx(1.0, abs=1e-12)
    assert terms["inter"][0] == 2.0 and terms["intra"][0] == 3.0
    assert dist(zt, zt, torch.tensor([0, 1]), 1.0, beta=1.0, gamma=1.0)["inter"][1].item() == pytest.approx(0.0, abs=1e-6)


def test_ls_hand_computed_and_invariant_to_the_teachers_scale_and_shift():
    """Logits [1, 2, 3] z-score (mean 2, std 1 with Bessel's correction) to [-1, 0, 1]; the student's [3, 2, 1]
    to [1, 0, -1]. At T = 1 the log-sum-exps are equal, so KL(p_t || p_s) = sum p_t ([-1, 0, 1] - [1, 0, -1])
    = 2 (p_t[2] - p_t[0]) = 4 sinh 1 / (1 + 2 cosh 1) = 4.700805 / 4.086161 = 1.150421."""
    zt, zs = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(standardise(zt), torch.tensor([[-1.0, 0.0, 1.0]], dtype=torch.float64), rtol=0, atol=1e-6)
    expected = 4 * math.sinh(1) / (1 + 2 * math.cosh(1))
    assert expected == pytest.approx(1.150421, abs=1e-6)
    assert ls(zs, zt, torch.tensor([0]), 1.0, weight=1.0)["kd"][1].item() == pytest.approx(expected, rel=1e-6)
    g = torch.Generator().manual_seed(5)
    zs, zt, y = torch.randn(16, 10, generator=g, dtype=torch.float64), torch.randn(16, 10, generator=g, dtype=torch.float64), torch.randint(0, 10, (16,), generator=g)
    a = kd_loss(zs, zt, y, 0.9, 2.0, objective="ls", objective_args={"weight": 10.0})
    b = kd_loss(zs, 7.0 * zt - 3.0, y, 0.9, 2.0, objective="ls", objective_args={"weight": 10.0})
    assert a.item() == pytest.approx(b.item(), rel=1e-6)  # only the teacher's logit relations matter
    # the authors' CIFAR loss, 0.1 CE + 9 T^2 KL, is the study's form at w = 0.9 with weight 10
    assert a.item() == pytest.approx((0.1 * F.cross_entropy(zs, y) + 9 * authors_ls(zs, zt, 2.0)).item(), rel=1e-10)


def test_nkd_hand_computed():
    """T = 1, label 0; the teacher's probabilities [1/2, 3/8, 1/8], a uniform student. target = -(1/2) ln(1/3)
    = ln 3 / 2; the non-target distributions [3/4, 1/4] (teacher) and [1/2, 1/2] (student), whose cross-entropy
    is ln 2; NKD = ln 3 / 2 + 1.5 ln 2 = 1.5890."""
    zt = torch.log(torch.tensor([[4.0, 3.0, 1.0]], dtype=torch.float64))
    zs, y = torch.zeros(1, 3, dtype=torch.float64), torch.tensor([0])
    terms = nkd(zs, zt, y, 1.0, gamma=1.5)
    assert terms["target"][1].item() == pytest.approx(math.log(3) / 2, rel=1e-12)
    assert terms["non_target"][1].item() == pytest.approx(math.log(2), rel=1e-12)
    assert kd_loss(zs, zt, y, 1.0, 1.0, objective="nkd").item() == pytest.approx(math.log(3) / 2 + 1.5 * math.log(2), rel=1e-12)


@pytest.mark.parametrize("name", ["mse", "dist", "ls", "nkd"])
def test_later_objectives_weight_zero_is_exactly_cross_entropy_and_stay_finite(name):
    """w = 0 leaves CE alone whatever the objective; extreme logits (a saturated softmax, a constant row for the
    z-score) give a finite loss and gradient."""
    zs, zt, y = torch.randn(8, 4), torch.randn(8, 4) * 10, torch.randint(0, 4, (8,))
    assert torch.equal(kd_loss(zs, zt, y, 0.0, 4.0, objective=name), F.cross_entropy(zs, y))
    zs = torch.tensor([[300.0, 0.0, 0.0], [1.0, 1.0, 1.0]], requires_grad=True)
    zt, y = torch.tensor([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]]), torch.tensor([0, 2])
    loss = kd_loss(zs, zt, y, 0.9, 1.0, objective=name)
    grad, = torch.autograd.grad(loss, zs)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", ["mse", "dist", "ls", "nkd"])
def test_later_objectives_train_a_student_towards_its_targets(name):
    """A linear student minimising the KD term alone (w = 1) on fixed targets moves its predictions towards the
    target's argmax: the term has the sign and the gradient a distillation loss needs (a sign error would move
    it away)."""
    g = torch.Generator().manual_seed(11)
    x, zt = torch.randn(64, 5, generator=g), 4 * torch.randn(64, 6, generator=g)
    y = torch.randint(0, 6, (64,), generator=g)
    lin = torch.nn.Linear(5, 6)
    torch.nn.init.zeros_(lin.weight), torch.nn.init.zeros_(lin.bias)
    zt = x @ torch.randn(5, 6, generator=g) * 2  # targets a linear student can reach
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    agree0 = (lin(x).argmax(1) == zt.argmax(1)).float().mean()
    for _ in range(300):
        opt.zero_grad()
        kd_loss(lin(x), zt, zt.argmax(1), 1.0, 2.0, objective=name).backward()
        opt.step()
    assert (lin(x).argmax(1) == zt.argmax(1)).float().mean() > max(0.8, agree0)
