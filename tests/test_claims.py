"""The claim verdicts are computed: synthetic summaries with known answers flip them, sweeps do not count
twice, too few seeds make a claim untestable, and the readings of alpha are compared side by side."""
import pytest

from kdlib.claims import NOT_SUPPORTED, NOT_TESTABLE, NOT_TESTED, SUPPORTED, independent_groups, verdict_matrix, verdicts


def summary(id_, sig=False, gain=1.0, pos_share=0.2, neg_share=0.5, asym_p=0.001, neg_sig=True, equivalent=False,
            rcd_better_p=0.9, dataset="digits", model="mlp", gaps=None, kind="self", testable=True, teacher=None,
            control=None, kd=None, epochs=30, n_seeds=10, **extra):
    teacher = teacher or [f"t-{id_}"]
    return {"id": id_, "significant_transfer": sig, "agreement_gain_points": gain, "agreement_p_by": 0.01 if sig else 0.5,
            "primary_testable": testable, "n_seeds": n_seeds, "neg_rise_significant": neg_sig, "neg_rise_p_by": 0.01,
            "pos_share_closed": pos_share, "neg_share_closed": neg_share, "asymmetry_p": asym_p, "asymmetry_n": 10,
            "asymmetry_excluded": 0, "rcd_kd_equivalent": equivalent, "rcd_kd_equivalence_p": 0.01 if equivalent else 0.4,
            "rcd_kd_accuracy_diff": -0.002, "equivalence_margin": 0.01, "equivalence_testable": testable,
            "rcd_better_p": rcd_better_p, "dataset": dataset, "teacher_model": model, "student_model": model,
            "teacher_gaps": gaps or {s: 5.0 for s in range(10)}, "teacher_gap": 5.0, "kind": kind, "variant": "logit",
            "epochs": epochs, "kd_weight": 0.9, "teacher_hashes": teacher, "control_hashes": control or [f"c-{id_}"],
            "kd_hashes": kd or [f"k-{id_}"], **extra}


def verdict(summaries, k):
    v = verdicts(summaries)
    return v.loc[v.claim == k, "verdict"].item()


def evidence(summaries, k):
    v = verdicts(summaries)
    return v.loc[v.claim == k, "evidence"].item()


def test_claim1_some_but_not_all():
    assert verdict([summary("a", sig=True), summary("b")], 1) == SUPPORTED
    assert verdict([summary("a", sig=True), summary("b", sig=True)], 1) == NOT_SUPPORTED
    assert verdict([summary("a"), summary("b")], 1) == NOT_SUPPORTED
    assert verdict([summary("a")], 1) == NOT_TESTED


def test_too_few_seeds_is_not_testable_never_supported_or_not():
    few = [summary("a", testable=False, n_seeds=2), summary("b", testable=False, n_seeds=2)]
    for k in (1, 2, 3, 4):
        assert verdict(few, k) == NOT_TESTABLE, k
    assert "[2]" in evidence(few, 1)


def test_sweeps_sharing_teachers_and_controls_count_once():
    base = summary("base", sig=True, teacher=["t"], control=["c"], kd=["k1"])
    sweep = summary("base-T16", sig=True, teacher=["t"], control=["c"], kd=["k2"])
    other = summary("other", teacher=["t2"], control=["c2"])
    groups = independent_groups([base, sweep, other])
    assert [(rep["id"], [s["id"] for s in sw]) for rep, sw in groups] == [("base", ["base-T16"]), ("other", [])]
    assert verdict([base, sweep, other], 1) == SUPPORTED
    assert "1 of 2 independent setups" in evidence([base, sweep, other], 1)
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
    assert verdict([summary("a", sig=True, gain=12.0)], 2) == NOT_SUPPORTED
    assert verdict([summary("a", gain=12.0)], 2) == NOT_TESTED


def test_claim3_is_judged_on_the_share_of_headroom():
    assert verdict([summary("a", sig=True, pos_share=0.2, neg_share=0.5, asym_p=0.001)], 3) == SUPPORTED
    # the same share closed on both: symmetric, however large the relative rise of A-
    assert verdict([summary("a", sig=True, pos_share=0.4, neg_share=0.4, asym_p=0.6)], 3) == NOT_SUPPORTED
    # the rise of A- itself must be significant
    assert verdict([summary("a", sig=True, neg_sig=False)], 3) == NOT_SUPPORTED
    assert verdict([summary("a", sig=False)], 3) == NOT_TESTED
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
    assert verdict([smaller, cnn], 6) == NOT_SUPPORTED
    longer = summary("v", dataset="cifar10", model="vit", gaps=vit["teacher_gaps"], epochs=100)
    assert verdict([longer, cnn], 6) == NOT_TESTED  # different training lengths are not compared
    adam = summary("v", dataset="cifar10", model="vit", gaps=vit["teacher_gaps"], optimizer="adamw")
    assert verdict([adam, summary("r", dataset="cifar10", model="resnet18", gaps=cnn["teacher_gaps"], optimizer="sgd")],
                   6) == NOT_TESTED  # nor different optimisers
    assert verdict([vit, summary("g", dataset="cifar10", model="vgg11", gaps=cnn["teacher_gaps"])], 6) == SUPPORTED
    assert verdict([cnn], 6) == NOT_TESTED


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
    from kdlib.claims import closest_to_paper

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
    from kdlib.claims import independence_table

    base = summary("self", teacher=["t"], control=["c"], kd=["k1"])
    std = summary("standard", teacher=["t"], control=["c2"], kd=["k2"])  # shares the teacher
    other = summary("other", teacher=["t3"], control=["c3"])
    bd = summary("bd", teacher=["t4"], control=["c4"], has_backdoor=True)
    row = independence_table({"mid, w=0.9": [base, std, other, bd]}).iloc[0]
    assert row["independent setups"] == 2 and row["counted (each with its own teachers and controls)"] == "self, other"
    assert row["sharing a teacher or control with one of them"] == "standard (with self)"
    assert row["backdoor entries (claim 7)"] == "bd"
