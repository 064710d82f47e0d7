"""The claim verdicts are computed: synthetic summaries with known answers flip them."""
import pytest

from kdlib.claims import NOT_SUPPORTED, NOT_TESTED, SUPPORTED, verdicts


def summary(id_, sig=False, gain=1.0, pos_rel=0.01, neg_rel=0.05, kd_beats_rcd=True, dataset="digits",
            model="mlp", gap=5.0, kind="self", alpha=0.9):
    return {"id": id_, "significant_transfer": sig, "agreement_gain_points": gain, "pos_gain_relative": pos_rel,
            "neg_gain_relative": neg_rel, "kd_beats_rcd_accuracy": kd_beats_rcd, "dataset": dataset,
            "teacher_model": model, "student_model": model, "teacher_gap": gap, "kind": kind, "alpha": alpha,
            "variant": "logit", "agreement_p_by": 0.01 if sig else 0.5}


def verdict(summaries, k):
    v = verdicts(summaries)
    return v.loc[v.claim == k, "verdict"].item()


def test_claim1_some_but_not_all():
    assert verdict([summary("a", sig=True), summary("b")], 1) == SUPPORTED
    assert verdict([summary("a", sig=True), summary("b", sig=True)], 1) == NOT_SUPPORTED
    assert verdict([summary("a"), summary("b")], 1) == NOT_SUPPORTED
    assert verdict([summary("a")], 1) == NOT_TESTED


def test_claim2_small_transfer():
    assert verdict([summary("a", sig=True, gain=2.0)], 2) == SUPPORTED
    assert verdict([summary("a", sig=True, gain=12.0)], 2) == NOT_SUPPORTED
    assert verdict([summary("a", gain=12.0)], 2) == NOT_TESTED


def test_claim3_asymmetry():
    assert verdict([summary("a", sig=True, pos_rel=0.01, neg_rel=0.2)], 3) == SUPPORTED
    assert verdict([summary("a", sig=True, pos_rel=0.2, neg_rel=0.01)], 3) == NOT_SUPPORTED
    assert verdict([summary("a", sig=False)], 3) == NOT_TESTED


def test_claim4_rcd_matches_kd():
    assert verdict([summary("a"), summary("b", kd_beats_rcd=False)], 4) == SUPPORTED
    assert verdict([summary("a"), summary("b")], 4) == NOT_SUPPORTED


def test_claim5_needs_cifar_resnet_and_vgg():
    base = [summary("a", sig=True)]
    assert verdict(base, 5) == NOT_TESTED
    cifar = [summary("r", sig=True, dataset="cifar10", model="resnet18"),
             summary("v", sig=True, dataset="cifar10", model="vgg19")]
    assert verdict(cifar, 5) == SUPPORTED
    cifar[1]["significant_transfer"] = False
    assert verdict(cifar, 5) == NOT_SUPPORTED


@pytest.mark.parametrize("vit_gap,expected", [(20.0, SUPPORTED), (1.0, NOT_SUPPORTED)])
def test_claim6_vit_gaps(vit_gap, expected):
    s = [summary("v", dataset="cifar10", model="vit", gap=vit_gap), summary("r", dataset="cifar10", model="resnet18", gap=8.0)]
    assert verdict(s, 6) == expected
    assert verdict(s[1:], 6) == NOT_TESTED


def test_claim7_not_tested():
    assert verdict([summary("a", sig=True)], 7) == NOT_TESTED


def test_backdoor_setups_do_not_count_for_the_clean_claims():
    poisoned = {**summary("b", sig=True, kd_beats_rcd=False), "has_backdoor": True, "backdoor_transfers": False,
                "backdoor_lift_transfers": False, "teacher_backdoor_lift": 0.0, "teacher_backdoor_asr": 0.0,
                "control_backdoor_asr": 0.0, "kd_backdoor_asr": 0.0, "rcd_backdoor_asr": 0.0,
                "backdoor_kd_vs_control_p_by": 1.0, "control_backdoor_lift": 0.0, "kd_backdoor_lift": 0.0,
                "backdoor_lift_kd_vs_control_p_by": 1.0}
    assert verdict([summary("a"), poisoned], 4) == NOT_SUPPORTED
    assert verdict([summary("a"), poisoned], 1) == NOT_TESTED  # one clean setup only
