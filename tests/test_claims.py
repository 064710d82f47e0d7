"""The claim verdicts are computed: synthetic summaries with known answers flip them, sweeps do not count
twice, too few seeds make a claim untestable, and the readings of alpha are compared side by side."""
import pytest

from kdlib import load_study
from kdlib.book.claims import (CONTRADICTED, NOT_FITTED, NOT_RUN_READING, NOT_SUPPORTED, NOT_TESTABLE, NOT_TESTED, NOTHING_TO_JUDGE,
                          SUPPORTED,
                          anchor, flips_sentence, independent_groups, linked_matrix, num, verdict_matrix, verdict_table,
                          verdicts)
from kdlib.book.formatting import details


def summary(id_, sig=False, gain=1.0, pos_share=0.2, neg_share=0.5, asym_p=0.001, neg_sig=True, equivalent=False,
            rcd_better_p=0.9, dataset="digits", model="mlp", gaps=None, kind="self", testable=True, teacher=None,
            control=None, kd=None, epochs=30, n_seeds=10, **extra):
    teacher = teacher or [f"t-{id_}"]
    return {"id": id_, "significant_transfer": sig, "agreement_gain_points": gain, "agreement_p_by": 0.01 if sig else 0.5,
            "transfer_testable": testable, "transfer_n_nonzero": n_seeds if testable else 2,
            "transfer_min_p": 2.0 ** -(n_seeds if testable else 2), "n_seeds": n_seeds,
            "control_agreement": 0.8, "control_disagreements": 100.0, "min_disagreements": 10,
            "agreement_gains": {s: gain / 100 + 0.001 * (s - 4.5) for s in range(n_seeds)},
            "neg_rise_significant": neg_sig, "neg_rise_p_by": 0.01,
            "pos_share_closed": pos_share, "neg_share_closed": neg_share, "asymmetry_p": asym_p, "asymmetry_n": 10,
            "asymmetry_min_p": 2.0 ** -10 if testable else 0.25,
            "asymmetry_excluded": 0, "rcd_kd_equivalent": equivalent, "rcd_kd_equivalence_p": 0.01 if equivalent else 0.4,
            "rcd_kd_accuracy_diff": -0.002, "equivalence_margin": 0.01, "equivalence_testable": testable,
            "rcd_better_p": rcd_better_p, "dataset": dataset, "teacher_model": model, "student_model": model,
            "teacher_gaps": gaps or {s: 5.0 for s in range(10)}, "teacher_gap": 5.0, "kind": kind, "variant": "logit",
            "objective": "hinton", "epochs": epochs, "optimizer": "sgd", "kd_weight": 0.9, "teacher_hashes": teacher,
            "control_hashes": control or [f"c-{id_}"], "kd_hashes": kd or [f"k-{id_}"], **extra}


def verdict(summaries, k):
    v = verdicts(summaries)
    return v.loc[v.claim == k, "verdict"].item()


def evidence(summaries, k):
    v = verdicts(summaries)
    return v.loc[v.claim == k, "evidence"].item()


def test_claim1_some_but_not_all():
    assert verdict([summary("a", sig=True), summary("b")], 1) == SUPPORTED
    # significant everywhere is the opposite of "some but not all"; nowhere is no support
    assert verdict([summary("a", sig=True), summary("b", sig=True)], 1) == CONTRADICTED
    assert verdict([summary("a"), summary("b")], 1) == NOT_SUPPORTED
    assert verdict([summary("a")], 1) == NOT_TESTED


def test_too_few_seeds_is_not_testable_never_supported_or_not():
    few = [summary("a", testable=False, n_seeds=2), summary("b", testable=False, n_seeds=2)]
    for k in (1, 2, 3, 4):
        assert verdict(few, k) == NOT_TESTABLE, k
    assert "a (2 of 2 differences non-zero, smallest p 0.25)" in evidence(few, 1)


def test_sweeps_sharing_teachers_and_controls_count_once():
    base = summary("base", sig=True, teacher=["t"], control=["c"], kd=["k1"])
    sweep = summary("base-T16", sig=True, teacher=["t"], control=["c"], kd=["k2"])
    other = summary("other", teacher=["t2"], control=["c2"])
    groups = independent_groups([base, sweep, other])
    assert [(rep["id"], [s["id"] for s in sw]) for rep, sw in groups] == [("base", ["base-T16"]), ("other", [])]
    assert verdict([base, sweep, other], 1) == SUPPORTED
    assert "1 of 2 testable independent setups" in evidence([base, sweep, other], 1)
    assert "base-T16 significant (sweep of base)" in evidence([base, sweep, other], 1)
    # two sweeps alone are one setup: claim 1 needs two independent ones
    assert verdict([base, sweep], 1) == NOT_TESTED
    # a student of another size shares the teachers but not the controls: still the same evidence
    smaller = summary("base-s8", sig=True, teacher=["t"], control=["c8"], kd=["k8"])
    assert [rep["id"] for rep, _ in independent_groups([base, smaller, other])] == ["base", "other"]
    # ... and so do standard and self distillation from one teacher
    selfd = summary("self", teacher=["t2"], control=["c-self"])
    assert len(independent_groups([other, selfd])) == 1


def test_claim2_small_transfer():
    assert verdict([summary("a", sig=True, gain=2.0)], 2) == SUPPORTED
    assert verdict([summary("a", sig=True, gain=12.0)], 2) == CONTRADICTED  # significantly above the bound
    assert verdict([summary("a", gain=12.0)], 2) == NOTHING_TO_JUDGE


def test_claim3_is_judged_on_the_share_of_headroom():
    assert verdict([summary("a", sig=True, pos_share=0.2, neg_share=0.5, asym_p=0.001)], 3) == SUPPORTED
    # the same share closed on both: symmetric, however large the relative rise of A-
    assert verdict([summary("a", sig=True, pos_share=0.4, neg_share=0.4, asym_p=0.6)], 3) == NOT_SUPPORTED
    # the rise of A- itself must be significant
    assert verdict([summary("a", sig=True, neg_sig=False)], 3) == NOT_SUPPORTED
    assert verdict([summary("a", sig=False)], 3) == NOTHING_TO_JUDGE
    # a larger share closed on the teacher's right answers, significantly: the opposite of the claim
    assert verdict([summary("a", sig=True, pos_share=0.6, neg_share=0.2, asym_p=0.99, asymmetry_p_reverse=0.001)],
                   3) == CONTRADICTED
    # the asymmetry p-values are corrected across the significant setups
    two = [summary("a", sig=True, asym_p=0.04, teacher=["ta"]), summary("b", sig=True, asym_p=0.04, teacher=["tb"])]
    assert verdict(two, 3) == NOT_SUPPORTED  # BY over 2 tests: 0.04 * 2 * 1.5 > 0.05


def test_claim4_needs_equivalence_not_just_no_difference():
    assert verdict([summary("a"), summary("b", equivalent=True)], 4) == SUPPORTED
    assert verdict([summary("a"), summary("b")], 4) == NOT_SUPPORTED  # no significant difference is not enough
    assert verdict([summary("a", rcd_better_p=0.01)], 4) == SUPPORTED  # rcd significantly more accurate
    assert "within ±1" in evidence([summary("b", equivalent=True)], 4)


def test_claim5_needs_cifar_resnet_and_vgg():
    assert verdict([summary("a", sig=True)], 5) == NOT_TESTED
    cifar = [summary("r", sig=True, dataset="cifar10", model="resnet18"), summary("v", sig=True, dataset="cifar10", model="vgg19")]
    assert verdict(cifar, 5) == SUPPORTED
    assert "smaller members" not in evidence(cifar, 5)
    cifar[1]["significant_transfer"] = False
    assert verdict(cifar, 5) == NOT_SUPPORTED


def test_claim5_falls_back_on_smaller_family_members_and_says_so():
    small = [summary("r8", sig=True, dataset="cifar10", model="resnet18", student_args={"width": 8}),
             summary("v11", sig=True, dataset="cifar10", model="vgg11", student_args={"width": 0.25})]
    assert verdict(small, 5) == SUPPORTED
    assert "smaller members of the ResNet and VGG families" in evidence(small, 5)
    assert verdict(small[:1] + [summary("c", sig=True, dataset="cifar10", model="cifar_cnn")], 5) == NOT_TESTED
    # the paper's own ResNet-18 is preferred over a smaller member when both ran
    own = summary("r18", dataset="cifar10", model="resnet18", student_args={})
    assert verdict([own] + small, 5) == NOT_SUPPORTED and "smaller members of the VGG family" in evidence([own] + small, 5)


def test_claim6_is_a_paired_test_with_matched_training():
    vit = summary("v", dataset="cifar10", model="vit", gaps={s: 20.0 + s for s in range(10)})
    cnn = summary("r", dataset="cifar10", model="resnet18", gaps={s: 8.0 + s / 2 for s in range(10)})
    assert verdict([vit, cnn], 6) == SUPPORTED
    smaller = summary("v", dataset="cifar10", model="vit", gaps={s: 1.0 for s in range(10)})
    assert verdict([smaller, cnn], 6) == CONTRADICTED  # the ViT's gap significantly smaller
    level = summary("v", dataset="cifar10", model="vit", gaps={s: cnn["teacher_gaps"][s] + (1 if s % 2 else -1) for s in range(10)})
    assert verdict([level, cnn], 6) == NOT_SUPPORTED
    longer = summary("v", dataset="cifar10", model="vit", gaps=vit["teacher_gaps"], epochs=100)
    assert verdict([longer, cnn], 6) == NOT_TESTED  # different training lengths are not compared
    adam = summary("v", dataset="cifar10", model="vit", gaps=vit["teacher_gaps"], optimizer="adamw")
    assert verdict([adam, summary("r", dataset="cifar10", model="resnet18", gaps=cnn["teacher_gaps"], optimizer="sgd")],
                   6) == NOT_TESTED  # nor different optimisers
    assert verdict([vit, summary("g", dataset="cifar10", model="vgg11", gaps=cnn["teacher_gaps"])], 6) == SUPPORTED
    assert verdict([cnn], 6) == NOT_TESTED



def test_claim6_leaves_out_a_teacher_that_does_not_fit_its_training_set():
    """An unfitted teacher's gap is capped by its train accuracy: it does not decide claim 6, and is named."""
    vit = summary("v", dataset="cifar10", model="vit", gaps={s: 20.0 + s for s in range(10)}, teacher_train_accuracy=0.90)
    cnn = summary("r", dataset="cifar10", model="resnet18", gaps={s: 8.0 + s / 2 for s in range(10)},
                  teacher_train_accuracy=1.0)
    assert verdict([vit, cnn], 6) == NOT_FITTED  # under the old rule: supported, with a note
    assert "teacher not fitted (its gap is capped): v (90.0 % train)" in evidence([vit, cnn], 6)
    assert verdict([{**vit, "teacher_train_accuracy": 0.99}, cnn], 6) == SUPPORTED
    # no ViT at all: nothing to compare, whatever the CNN's fit (not "teacher not fitted")
    assert verdict([{**cnn, "teacher_train_accuracy": 0.9}], 6) == NOT_TESTED
    # the threshold is the setup's (the study file's fitted_train_accuracy)
    assert verdict([{**vit, "fitted_train_accuracy": 0.9}, {**cnn, "fitted_train_accuracy": 0.9}], 6) == SUPPORTED


def test_claim2_is_not_decided_by_a_teacher_that_does_not_fit():
    """The ViT's kd copies its teacher's own training errors (+21 points): an unfitted teacher decides nothing."""
    unfitted = summary("vit", sig=True, gain=21.0, teacher_train_accuracy=0.90)
    fitted = summary("cnn", sig=True, gain=2.0, teacher=["tc"], teacher_train_accuracy=1.0)
    assert verdict([unfitted, fitted], 2) == SUPPORTED  # under the old rule: contradicted by the ViT
    assert "vit: not testable, teacher not fitted (90.0 % train" in evidence([unfitted, fitted], 2)
    assert verdict([unfitted], 2) == NOT_FITTED


def test_claim7_not_tested_without_a_backdoor():
    assert verdict([summary("a", sig=True)], 7) == NOT_TESTED


def test_verdicts_side_by_side_name_the_flips():
    w9 = [summary("a", sig=True), summary("b")]
    w1 = [summary("a"), summary("b")]
    matrix, texts = verdict_matrix({"cpu, w=0.9": w9, "cpu, w=0.1": w1})
    assert matrix.loc[1, "cpu, w=0.9"] == SUPPORTED and matrix.loc[1, "cpu, w=0.1"] == NOT_SUPPORTED
    assert matrix.loc[1, "flips between readings"] == "cpu" and matrix.loc[4, "flips between readings"] == ""
    assert "significant" in texts[("cpu, w=0.9", 1)]
    # a claim untested under one reading (no backdoor entry ran it) does not flip
    matrix, _ = verdict_matrix({"cpu, w=0.9": w9, "cpu, w=0.1": [summary("a", testable=False), summary("b", testable=False)]})
    assert matrix.loc[1, "cpu, w=0.1"] == NOT_TESTABLE and matrix.loc[1, "flips between readings"] == ""


@pytest.mark.parametrize("missing", ["has_backdoor"])
def test_backdoor_setups_do_not_count_for_the_clean_claims(missing):
    poisoned = {**summary("b", sig=True, equivalent=True, teacher=["tb"]), "has_backdoor": True,
                "backdoor_lift_transfers": False, "backdoor_kd_vs_control_p_by": 1.0, "backdoor_lift_kd_vs_control_p_by": 1.0,
                **{f"{arm}_backdoor_{m}": 0.0 for arm in ("teacher", "control", "kd", "rcd") for m in ("asr", "lift")}}
    assert verdict([summary("a"), poisoned], 4) == NOT_SUPPORTED
    assert verdict([summary("a"), poisoned], 1) == NOT_TESTED  # one clean setup only


def test_closest_to_paper_compares_each_reading_with_the_abstract():
    from kdlib.book.claims import closest_to_paper

    sig, plain = summary("a", sig=True), summary("b")
    columns = {"mid, w=0.9": [sig, plain], "mid, w=0.1": [summary("a"), summary("b")], "cpu, w=0.9": [sig, plain]}
    matrix, _ = verdict_matrix(columns)
    text = closest_to_paper(matrix, "mid")
    first = text.splitlines()[0]
    assert "claims 1, 2" in first and "w=0.9: agrees" in first and "w=0.1: disagrees (claim 1 not supported)" in first
    assert "cpu" not in text  # only the asked scale's columns
    assert "claim 7 not tested at this scale" in text.splitlines()[-1]
    assert closest_to_paper(matrix, "paper") == ""


def test_the_independence_table_names_what_counts_and_what_shares():
    from kdlib.book.claims import independence_table

    base = summary("self", teacher=["t"], control=["c"], kd=["k1"])
    std = summary("standard", teacher=["t"], control=["c2"], kd=["k2"])  # shares the teacher
    other = summary("other", teacher=["t3"], control=["c3"])
    bd = summary("bd", teacher=["t4"], control=["c4"], has_backdoor=True)
    row = independence_table({"mid, w=0.9": [base, std, other, bd]}).iloc[0]
    assert row["independent setups"] == 2 and row["counted (each with its own teachers and controls)"] == "self, other"
    assert row["sharing a teacher or control with one of them"] == "standard (with self)"
    assert row["backdoor entries (claim 7)"] == "bd"


# ------------------------------------------------------------------ issue 19: verdicts that cannot pass or fail by construction
def test_claim1_a_setup_whose_test_cannot_reach_significance_is_not_counted():
    # e.g. vowels at w = 0.1: 10 pairs but 4 non-zero differences (best p 1/16): neither significant nor not
    few = summary("vowels", testable=False, transfer_n_nonzero=4, transfer_min_p=1 / 16)
    three = [summary("a", sig=True), summary("b"), few]
    assert "1 of 2 testable independent setups" in evidence(three, 1)
    assert "vowels (4 of 10 differences non-zero, smallest p 0.062)" in evidence(three, 1)
    # alone with one significant setup it leaves claim 1 without a "not in all" case
    assert verdict([summary("a", sig=True), few], 1) == NOT_TESTABLE


def test_claim1_a_setup_at_the_ceiling_counts_neither_way():
    # the control disagrees with its teacher on about 4 test examples per seed: nothing left to copy
    ceiling = summary("digits-self", control_disagreements=4.2)
    assert verdict([summary("a", sig=True), summary("b", sig=True), ceiling], 1) == CONTRADICTED
    assert "2 of 2 testable" in evidence([summary("a", sig=True), summary("b", sig=True), ceiling], 1)
    assert "digits-self (4.2 per seed, not significant)" in evidence([summary("a", sig=True), summary("b", sig=True), ceiling], 1)


def test_claim2_a_near_ceiling_setup_neither_supports_nor_refutes():
    near = summary("digits-standard", sig=True, gain=1.5, control_agreement=0.979)
    assert verdict([near], 2) == NOT_TESTABLE
    assert "at the ceiling" in evidence([near], 2) and "97.9 %" in evidence([near], 2)
    # beside a setup away from the ceiling, only that one decides
    big = summary("far", sig=True, gain=12.0, teacher=["tf"])
    assert verdict([near, big], 2) == CONTRADICTED


def test_claim2_needs_the_gain_shown_below_the_threshold_not_a_point_estimate():
    # mean gain 4 points but seeds spread from -6 to +14: the upper bound is far above 5
    spread = summary("a", sig=True, gain=4.0, agreement_gains={s: (4.0 + (10 if s % 2 else -10)) / 100 for s in range(10)})
    assert verdict([spread], 2) == NOT_SUPPORTED  # neither shown below 5 nor above it
    assert "not shown below 5 points" in evidence([spread], 2)
    assert verdict([summary("a", sig=True, gain=4.0)], 2) == SUPPORTED  # 10 seeds all near 4


def test_claim3_an_untestable_significant_setup_is_not_a_failure_and_leaves_the_family():
    ok = summary("a", sig=True, asym_p=0.03, teacher=["ta"])
    # significant transfer, but only 2 seeds with both shares defined: the asymmetry test cannot reach 0.05
    few = summary("b", sig=True, asym_p=0.25, teacher=["tb"], asymmetry_n=2, asymmetry_min_p=0.25)
    assert verdict([ok, few], 3) == SUPPORTED  # 0.03 alone in its family; with b's p BY would make it 0.09
    assert "1 of 1 testable significant setups" in evidence([ok, few], 3)
    assert "b: not testable (2 seeds" in evidence([ok, few], 3)
    assert verdict([few], 3) == NOT_TESTABLE
    # the threshold comes from the power limit, not a fixed count: 5 non-zero pairs (best p 1/32) can pass alone
    five = summary("c", sig=True, asym_p=1 / 32, asymmetry_n=5, asymmetry_min_p=1 / 32)
    assert verdict([five], 3) == SUPPORTED


def test_claim4_rcd_more_accurate_is_corrected_across_setups():
    two = [summary("a", rcd_better_p=0.04, teacher=["ta"]), summary("b", rcd_better_p=0.04, teacher=["tb"])]
    assert verdict(two, 4) == NOT_SUPPORTED  # BY over 2 equal p-values: 2 c(2) 0.04 / 2 = 0.06
    assert "rcd > kd p (BY over these setups) 0.06" in evidence(two, 4)
    assert verdict([summary("a", rcd_better_p=0.04)], 4) == SUPPORTED  # a family of one


def test_claim4_tost_is_corrected_across_setups_as_rcd_better_is():
    """One equivalence p of 0.02 among six setups passes uncorrected, not after BY over the six."""
    six = [summary(f"s{i}", teacher=[f"t{i}"], rcd_kd_equivalence_p=0.02 if i == 0 else 0.6) for i in range(6)]
    six[0]["rcd_kd_equivalent"] = True  # what the setup's own, uncorrected TOST says
    assert verdict(six, 4) == NOT_SUPPORTED
    assert "s0: rcd - kd accuracy -0.20 points, not shown equivalent within ±1 (TOST p 0.02, BY over these setups 0.29)" \
        in evidence(six, 4)
    assert verdict(six[:1], 4) == SUPPORTED  # a family of one: 0.02 stands


def test_claim4_is_contradicted_only_where_kd_beats_rcd_everywhere():
    both = [summary("a", kd_beats_rcd_accuracy=True), summary("b", kd_beats_rcd_accuracy=True, teacher=["tb"])]
    assert verdict(both, 4) == CONTRADICTED
    assert verdict([both[0], summary("b", teacher=["tb"])], 4) == NOT_SUPPORTED


def test_negative_transfer_is_named_in_claim1_whatever_the_ceiling_rule():
    neg = summary("fsdd", gain=-2.5, negative_transfer_p=0.001, control_disagreements=5.7)  # at the ceiling
    text = evidence([summary("a", sig=True), summary("b"), neg], 1)
    assert "Negative transfer" in text and "fsdd (-2.50 points" in text
    assert "Negative transfer" not in evidence([summary("a", sig=True), summary("b")], 1)


def test_the_table_shows_a_short_reason_per_cell():
    matrix, _, reasons = verdict_table({"cpu, w=0.9": [summary("a", sig=True), summary("b", sig=True)]})
    assert reasons[("cpu, w=0.9", 1)] == "significant in 2 of 2 (transfer everywhere)"
    assert "<small>significant in 2 of 2 (transfer everywhere)</small>" in linked_matrix(matrix, reasons).loc[1, "cpu, w=0.9"]
    assert "share" not in reasons[("cpu, w=0.9", 2)] and "% of the control's headroom" in \
        verdict_table({"c, w=0.9": [summary("a", sig=True, agreement_share_closed=0.2)]})[1][("c, w=0.9", 2)]


def test_claim6_needs_the_same_optimiser_too():
    vit = summary("v", dataset="cifar10", model="vit", gaps={s: 20.0 + s for s in range(10)}, optimizer="adamw")
    cnn = summary("r", dataset="cifar10", model="resnet18", gaps={s: 8.0 + s / 2 for s in range(10)})
    assert verdict([vit, cnn], 6) == NOT_TESTED
    assert verdict([{**vit, "optimizer": "sgd"}, cnn], 6) == SUPPORTED


def test_the_paper_plan_has_a_matched_vit_cnn_pair_for_claim6():
    study = load_study()
    setups = [study.entry_setup("paper", e) for e in study.plan("paper")]
    vits = [s for s in setups if s.teacher.name == "vit"]
    cnns = [s for s in setups if s.teacher.name in ("resnet18", "vgg19")]
    pairs = [(v.name, c.name) for v in vits for c in cnns if v.dataset == c.dataset
             and v.train["epochs"] == c.train["epochs"] and v.train["optimizer"] == c.train["optimizer"]]
    assert pairs, "no ViT and CNN in the paper plan are trained for the same epochs with the same optimiser"


def _backdoor(id_, lift_p=0.02, testable=True, w=0.9, **kw):
    return {**summary(id_, teacher=[f"t-{id_}"], **kw), "has_backdoor": True, "kd_weight": w,
            "backdoor_lift_transfers": lift_p <= 0.05, "backdoor_lift_testable": testable, "backdoor_lift_primary": True,
            "backdoor_kd_vs_control_p_by": 0.024, "backdoor_lift_kd_vs_control_p_by": lift_p,
            **{f"{arm}_backdoor_{m}": 0.6 for arm in ("teacher", "kd", "rcd") for m in ("asr", "lift")},
            "control_backdoor_asr": 0.1, "control_backdoor_lift": -0.0001}


def test_claim7_is_decided_by_the_primary_lift_test_and_says_so():
    e = evidence([_backdoor("bd", lift_p=0.3)], 7)
    assert verdict([_backdoor("bd", lift_p=0.3)], 7) == NOT_SUPPORTED
    assert e.startswith("bd: decided by the trigger's lift over the base rate, kd > control p (BY, primary family) 0.3, "
                        "not significant")
    assert "shown but not deciding" in e and "-0.0" not in e
    assert verdict([_backdoor("bd", lift_p=0.01)], 7) == SUPPORTED
    assert verdict([_backdoor("bd", lift_p=0.3, testable=False)], 7) == NOT_TESTABLE


def test_claim7_not_tested_only_where_no_backdoor_ran_at_the_scale():
    clean = [summary("a"), summary("b")]
    matrix, texts = verdict_matrix({"cpu, w=0.9": clean + [_backdoor("bd")], "cpu, w=0.1": clean,
                                    "mid, w=0.9": clean})
    assert matrix.loc[7, "cpu, w=0.1"] == NOT_RUN_READING and "w=0.9" in texts[("cpu, w=0.1", 7)]
    assert matrix.loc[7, "mid, w=0.9"] == NOT_TESTED


def test_no_negative_zero_in_the_evidence():
    assert num(-0.0004, ".1f") == "0.0" and num(-0.0004, "+.2f") == "0.00" and num(-0.04, ".1f") == "0.0"
    assert num(-0.06, ".1f") == "-0.1" and num(-1e-5, ".2g") == "-1e-05"


def test_flips_sentence_names_each_column_once():
    w9, w1 = [summary("a", sig=True), summary("b")], [summary("a"), summary("b")]
    matrix, _ = verdict_matrix({"cpu, w=0.9": w9, "cpu, w=0.1": w1, "mid, w=0.9": w1, "mid, w=0.1": w9})
    text = flips_sentence(matrix)
    assert text.count("claim 1") == 1
    for reading in ("cpu: w=0.9 supported, w=0.1 not supported", "mid: w=0.9 not supported, w=0.1 supported"):
        assert reading in text
    assert text.count("w=0.9") == 2 and text.count("w=0.1") == 2


def test_verdict_cells_link_to_their_evidence_blocks():
    matrix, texts = verdict_matrix({"cpu, w=0.9": [summary("a", sig=True), summary("b")]})
    cell = linked_matrix(matrix).loc[1, "cpu, w=0.9"]
    assert cell == f'<a href="#{anchor("cpu, w=0.9", 1)}">supported</a>'
    assert f'id="{anchor("cpu, w=0.9", 1)}"' in details("cpu, w=0.9: supported", texts[("cpu, w=0.9", 1)],
                                                           anchor=anchor("cpu, w=0.9", 1))
    assert len({anchor(c, k) for c in ("cpu, w=0.9", "cpu, w=0.1") for k in range(1, 8)}) == 14
    assert anchor("cpu, w=0.9", 7) == "claim-7-cpu-w-0-9"


def test_readings_come_from_the_study_file():
    import copy

    from kdlib.book.evidence import BookEvidence

    study = copy.copy(load_study())
    study.defaults = {**study.defaults, "kd_weight": 0.8, "kd_weight_variants": [0.2, 0.8]}
    rows = [{**summary("a", sig=True), "kd_weight": 0.8}, {**summary("b"), "kd_weight": 0.8},
            {**summary("a"), "kd_weight": 0.2}, {**summary("b"), "kd_weight": 0.2}]
    ev = BookEvidence(study=study, scales=["cpu"], summaries={"cpu": rows})
    assert ev.readings() == (0.8, 0.2) and ev.other_readings() == (0.2,)
    assert list(ev.claim_columns()) == ["cpu, w=0.8", "cpu, w=0.2"]
    # an entry distilled with another KD objective (the DKD check) is not evidence for the paper's (Hinton's) KD
    ev.summaries["cpu"] = rows + [{**summary("a-dkd", sig=True), "kd_weight": 0.8, "objective": "dkd"}]
    assert [x["id"] for x in ev.claim_columns()["cpu, w=0.8"]] == ["a", "b"]
    study.defaults = {k: v for k, v in study.defaults.items() if k != "kd_weight"}
    with pytest.raises(ValueError, match="names no kd_weight"):
        ev.readings()


def test_status_tells_never_run_entries_from_incomplete_ones(tmp_path):
    """A scale whose plan is mostly unrun (the paper scale with one entry computed on the CPU) lists those
    entries as not run here, not as incomplete; an entry with some runs stored is incomplete."""
    from kdlib.book.evidence import BookEvidence
    from kdlib.executors import LocalExecutor
    from kdlib.jobs import collect_jobs
    from kdlib.store import RunStore

    study = load_study()
    cfg = study.setup("digits-mlp-self", "cpu")
    store = RunStore(tmp_path / "runs")
    LocalExecutor("cpu", workers=1).run([j for j in collect_jobs([("d", cfg)]) if j.cfg == cfg.teacher_run(0)], store)
    ev = BookEvidence(study=study, scales=["cpu"], summaries={"cpu": [{**summary("x"), "main_kd_weight": 0.9}]},
                      missing={"cpu": ["digits-mlp-self", "mnist5k-lenet-self"]}, stores={"cpu": store})
    text = ev.status()
    assert "1 entry with complete results" in text
    assert "incomplete and left out: digits-mlp-self;" in text and "not run here (1): mnist5k-lenet-self" in text


def test_status_says_how_far_an_entry_still_training_has_got(tmp_path, monkeypatch):
    """An entry listed as pending (the full scale's, trained over several sessions) is named with the runs
    stored so far, not as untrained; the count comes from the store, so one more stored run changes it."""
    from kdlib.book.evidence import BookEvidence
    from kdlib.book.setup_analysis import plan_setups
    from kdlib.executors import LocalExecutor
    from kdlib.jobs import collect_jobs
    from kdlib.store import RunStore

    study = load_study()
    monkeypatch.setattr(type(study), "pending", lambda self, scale: ["digits-mlp-self", "mnist5k-lenet-self"])
    cfg = dict(plan_setups(study, "cpu"))["digits-mlp-self"]  # the plan entry's runs: its KD weights and noises
    store = RunStore(tmp_path / "runs")
    ev = BookEvidence(study=study, scales=["cpu"], summaries={"cpu": [{**summary("x"), "main_kd_weight": 0.9}]},
                      missing={"cpu": ["digits-mlp-self", "mnist5k-lenet-self"]}, stores={"cpu": store})
    n = len(cfg.runs())
    assert f"digits-mlp-self (0 of {n} runs stored)" in ev.status()
    LocalExecutor("cpu", workers=1).run([j for j in collect_jobs([("d", cfg)]) if j.cfg == cfg.teacher_run(0)], store)
    text = ev.status()
    assert f"still training (pending in study.yaml; shown once complete): digits-mlp-self (1 of {n} runs stored)" in text
    assert "mnist5k-lenet-self (0 of" in text and "incomplete and left out" not in text and "not run here" not in text


def test_sensitivity_names_the_threshold_a_verdict_depends_on():
    """FSDD-like: at 10 disagreements its control is at the ceiling and claim 1 reads contradicted (transfer in
    every other setup); at 5 it counts, not significant, and claim 1 is supported."""
    from kdlib.book.claims import sensitivity

    col = {"mid, w=0.9": [summary("a", sig=True, gain=4.0), summary("b", sig=True, gain=4.0, teacher=["tb"]),
                          summary("fsdd", teacher=["tf"], control_disagreements=5.7)]}
    sens = sensitivity(col)
    assert sens[("mid, w=0.9", 1)] == "depends on min_disagreements = 5: supported"
    assert verdict(col["mid, w=0.9"], 1) == CONTRADICTED
    # claim 2: gains of 4 points are small under the bound of 5 and of 10, not under 2
    assert sens[("mid, w=0.9", 2)] == "depends on small_transfer_points = 2: contradicted"
    assert sens[("mid, w=0.9", 3)] == "robust"


def test_the_tost_margin_is_recomputed_from_the_per_seed_accuracies():
    from kdlib.book.claims import Rules

    kd = {s: 0.80 + 0.001 * s for s in range(10)}
    rcd = {s: kd[s] - 0.008 + 0.0005 * (s % 3) for s in range(10)}  # about 0.7 points below kd
    x = summary("a", kd_accuracies=kd, rcd_accuracies=rcd)
    assert verdict([x], 4) == NOT_SUPPORTED  # the summary's own TOST p (0.4)
    assert verdicts([x], Rules(equivalence_margin=0.01)).loc[3, "verdict"] == SUPPORTED  # within 1 point
    assert verdicts([x], Rules(equivalence_margin=0.005)).loc[3, "verdict"] == NOT_SUPPORTED  # not within 0.5


@pytest.mark.parametrize("name", ["min_disagreements", "small_transfer_points", "equivalence_margin",
                                  "fitted_train_accuracy", "strong_backdoor_lift"])
def test_a_threshold_changes_only_the_verdicts_of_its_claims(name):
    """One thing at a time: varying one threshold can move only the claims that use it."""
    from kdlib.book.claims import SENSITIVITY, SENSITIVITY_CLAIMS, Rules

    kd = {s: 0.80 + 0.001 * s for s in range(10)}
    setups = [summary("a", sig=True, gain=3.0, control_disagreements=7.0, teacher_train_accuracy=0.96,
                      kd_accuracies=kd, rcd_accuracies={s: v - 0.007 for s, v in kd.items()}),
              summary("b", teacher=["tb"], gain=8.0, sig=True, control_disagreements=30.0, teacher_train_accuracy=1.0,
                      dataset="cifar10", model="vit", gaps={s: 20.0 + s for s in range(10)}),
              summary("c", teacher=["tc"], control_disagreements=15.0, dataset="cifar10", model="resnet18",
                      gaps={s: 8.0 + s / 2 for s in range(10)}, teacher_train_accuracy=0.97),
              _backdoor("bd")]
    base = verdicts(setups).set_index("claim")["verdict"]
    moved = set()
    for v in SENSITIVITY[name]:
        alt = verdicts(setups, Rules(**{name: v})).set_index("claim")["verdict"]
        moved |= set(alt.index[alt != base])
    assert moved <= set(SENSITIVITY_CLAIMS[name]), (name, moved)


def test_claims1_and_4_leave_out_setups_whose_students_do_not_fit():
    """The paper-scale FSDD entry: kd students at 76 % training accuracy under w = 0.9 decide nothing."""
    under = summary("fsdd", teacher=["tf"], kd_train_accuracy=0.76, equivalent=True)
    fit = [summary("a", sig=True, kd_train_accuracy=1.0), summary("b", teacher=["tb"], kd_train_accuracy=1.0)]
    assert verdict(fit + [under], 1) == SUPPORTED and "fsdd (76.0 % train)" in evidence(fit + [under], 1)
    assert verdict(fit[:1] + [under], 4) == NOT_SUPPORTED  # under the old rule: supported by fsdd's equivalence
    assert verdict(fit[:1] + [{**under, "kd_train_accuracy": 0.995}], 4) == SUPPORTED
    assert verdict([under], 4) == "not testable: students not fitted"
