"""The analysis layer on a hand-built results table: transfer, headroom shares, the asymmetry test,
convergence, readings, and a whole setup summary with known answers."""
import numpy as np
import pandas as pd
import pytest

from kdlib import load_study
from kdlib.book.setup_analysis import (BACKDOOR_PRIMARY, arm_table, asymmetry_test, compact_tests, convergence, fmt_mean_sem,
                            headroom_shares, is_flat, primary_family, readings_table, setup_tests, summarise_setup,
                            transfer_table)
from kdlib.stats import power_limits
from kdlib.book.frames import main_arms

N = 8


def _table(kd_pos=0.95, kd_neg=0.40, ctrl_pos=0.90, ctrl_neg=0.20, rcd_acc=0.80, kd_acc=0.80, jitter=0.0):
    """Per-seed runs: teacher, control, kd, rcd at w 0.9, and kd / rcd at w 0.1 (equal to control)."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(N):
        e = jitter * rng.normal(size=8)
        base = {"seed": s, "n_teacher_correct": 80, "n_teacher_wrong": 20, "loss": 1.0, "ece": 0.1,
                "js_divergence": 0.1, "activation_distance": 0.1, "kl_teacher_student": 0.1, "mi": 1.0, "nmi": 0.5,
                "cka": 0.5, "train_accuracy": 1.0, "generalisation_gap": 10.0}

        def run(arm, pos, neg, acc, w=None, noise=None, main=True):
            agree = (80 * pos + 20 * neg) / 100
            return {**base, "arm": arm, "kd_weight": w, "rcd_noise": noise, "is_main": main, "hash": f"{arm}{w}{noise}{s}",
                    "teacher_hash": f"t{s}", "pos_agreement": pos, "neg_agreement": neg, "agreement": agree,
                    "accuracy": acc, "n_pos_agree": 80 * pos, "n_neg_agree": 20 * neg}

        rows += [run("teacher", np.nan, np.nan, 0.8), run("control", ctrl_pos + e[0], ctrl_neg + e[1], 0.78 + e[2]),
                 run("kd", kd_pos + e[3], kd_neg + e[4], kd_acc + e[5], 0.9),
                 run("rcd", ctrl_pos, ctrl_neg, rcd_acc + e[6], 0.9, "unit_fixed"),
                 run("kd", ctrl_pos + e[0], ctrl_neg + e[1], 0.78, 0.1, main=False),
                 run("rcd", ctrl_pos, ctrl_neg, 0.78, 0.1, "unit_fixed", main=False)]
    df = pd.DataFrame(rows)
    df.loc[df.arm == "teacher", ["agreement", "pos_agreement", "neg_agreement", "mi", "nmi", "cka"]] = np.nan
    return df


@pytest.fixture(scope="module")
def setup():
    # the hand-built control disagrees with its teacher on 8 right and 16 wrong answers per seed
    return load_study().setup("digits-mlp-self", "cpu", n_seeds=N).with_changes(min_disagreements=5)


def test_main_arms_picks_one_reading():
    r = _table()
    assert len(main_arms(r)) == 4 * N and set(main_arms(r, 0.1).kd_weight.dropna()) == {0.1}
    assert len(main_arms(r, 0.1)) == 4 * N


def test_transfer_table_and_headroom_shares_by_hand():
    r = main_arms(_table())
    t = transfer_table(r)
    assert t.loc["pos_gain_points", "kd"] == pytest.approx(5.0) and t.loc["neg_gain_points", "kd"] == pytest.approx(20.0)
    assert t.loc["pos_headroom", "control"] == pytest.approx(10.0) and t.loc["neg_headroom", "control"] == pytest.approx(80.0)
    # kd closes (0.95 - 0.90) / 0.10 = 50 % of the A+ headroom and (0.40 - 0.20) / 0.80 = 25 % of the A- headroom:
    # a larger relative rise of A- (+100 % vs +5.6 %) but a smaller share of its headroom
    assert t.loc["pos_share_closed", "kd"] == pytest.approx(0.5) and t.loc["neg_share_closed", "kd"] == pytest.approx(0.25)
    assert t.loc["neg_gain_relative", "kd"] == pytest.approx(100.0) and t.loc["pos_gain_relative", "kd"] == pytest.approx(500 / 90)
    shares = headroom_shares(r)
    assert np.allclose(shares["pos_share"], 0.5) and np.allclose(shares["neg_share"], 0.25)
    assert t.loc["copied_wrong", "kd"] == pytest.approx(8.0)


def test_asymmetry_is_judged_on_headroom_not_relative_rise():
    symmetric = main_arms(_table(jitter=0.01))  # the relative rise of A- is far larger, the share is not
    assert asymmetry_test(symmetric)["p"] > 0.5
    asymmetric = main_arms(_table(kd_pos=0.91, kd_neg=0.60, jitter=0.01))  # shares 0.1 vs 0.5
    res = asymmetry_test(asymmetric)
    assert res["p"] == pytest.approx(2 ** -N) and res["neg_share"] > res["pos_share"]


def test_shares_need_enough_control_disagreements_per_seed():
    r = main_arms(_table())  # the control disagrees with its teacher on 8 right answers per seed
    assert headroom_shares(r, min_disagreements=8)["pos_share"].notna().all()
    assert headroom_shares(r, min_disagreements=9)["pos_share"].isna().all()
    assert headroom_shares(r, min_disagreements=9)["neg_share"].notna().all()  # 16 on the wrong ones
    with pytest.raises(ValueError, match="min_disagreements must be an integer >= 1, got 0"):
        headroom_shares(r, min_disagreements=0)


def test_shown_shares_are_means_over_the_seeds_the_test_used():
    r = main_arms(_table())
    # seed 0: the control agrees with every right answer but 2 (a share from 2 examples); its A+ share goes
    c0 = (r.arm == "control") & (r.seed == 0)
    r.loc[c0, "pos_agreement"], r.loc[c0, "n_pos_agree"] = 78 / 80, 78
    r.loc[(r.arm == "kd") & (r.seed == 0), "neg_agreement"] = 0.9  # an A- share of (0.9 - 0.2) / 0.8 there
    res = asymmetry_test(r, min_disagreements=5)
    assert res["n"] == N - 1 and res["n_excluded"] == 1
    assert res["neg_share"] == pytest.approx(0.25) and res["pos_share"] == pytest.approx(0.5)  # seed 0 left out of both
    t = transfer_table(r, min_disagreements=5)
    assert t.loc["neg_share_closed", "kd"] == pytest.approx(0.25) and t.loc["share_seeds", "kd"] == N - 1


def test_backdoor_setups_have_the_trigger_lift_in_their_primary_family():
    study = load_study()
    clean = study.setup("mnist5k-lenet-standard", "cpu")
    poisoned = clean.with_changes(backdoor={"target": 0, "poison_fraction": 0.2, "patch": 4})
    assert BACKDOOR_PRIMARY not in primary_family(clean) and BACKDOOR_PRIMARY in primary_family(poisoned)
    assert primary_family(poisoned)[:len(primary_family(clean))] == primary_family(clean)


def test_undefined_shares_are_excluded_and_counted():
    r = main_arms(_table(jitter=0.01))
    r.loc[(r.arm == "control") & (r.seed == 0), "neg_agreement"] = np.nan  # a teacher seed with no errors
    res = asymmetry_test(r)
    assert res["n_excluded"] == 1 and res["n"] == N - 1


def test_setup_tests_families_and_compact_table():
    r = main_arms(_table(jitter=0.01))
    tests = setup_tests(r)
    primary = tests[tests.family == "primary"]
    assert len(primary) == 3 and set(zip(primary.metric, primary.arm_a, primary.arm_b)) == {
        ("agreement", "kd", "control"), ("neg_agreement", "kd", "control"), ("agreement", "kd", "rcd")}
    assert primary["significant"].all()  # 8 seeds all one way: p = 2^-8, BY over 3 tests
    compact = compact_tests(tests)
    assert list(compact.columns) == ["family", "comparison", "metric", "difference", "r", "p_by", "verdict"]
    row = compact[(compact.metric == "neg_agreement") & (compact.comparison == "kd > control")].iloc[0]
    diff, sem = (float(v) for v in row["difference"].split(" ± "))
    assert abs(diff - 20.0) < 2.0 and 0 < sem < 1 and row["verdict"] == "significant" and row["r"] == "+1.00"


def test_summary_of_a_setup(setup):
    r = _table(jitter=0.002)
    s = summarise_setup("x", setup, r)
    assert s["kd_weight"] == 0.9 and s["n_seeds"] == N and s["significant_transfer"] and s["transfer_testable"]
    assert s["agreement_gain_points"] == pytest.approx(8.0, abs=0.5)
    assert s["neg_share_closed"] == pytest.approx(0.25, abs=0.02) and s["asymmetry_p"] > 0.5
    assert s["teacher_hashes"] == [f"teacherNoneNone{i}" for i in range(N)]
    # rcd equals kd's accuracy (both 0.80) up to jitter: equivalent within 1 point
    assert s["rcd_kd_equivalent"] and abs(s["rcd_kd_accuracy_diff"]) < 0.01
    other = summarise_setup("x", setup, r, kd_weight=0.1)  # the other reading: kd equals the control
    assert other["kd_weight"] == 0.1 and not other["significant_transfer"]
    far = summarise_setup("x", setup, _table(rcd_acc=0.5, jitter=0.01))
    assert not far["rcd_kd_equivalent"] and far["rcd_kd_accuracy_diff"] == pytest.approx(-0.3, abs=0.02)


def test_power_of_the_primary_family(setup):
    assert power_limits(10, 3)["lone_test_can_survive"] and not power_limits(2, 3)["lone_test_can_survive"]
    assert power_limits(10, 3)["min_p_by_lone_test"] == pytest.approx(3 * (1 + 1 / 2 + 1 / 3) / 1024)
    assert summarise_setup("x", setup, _table(jitter=0.01))["transfer_testable"]  # N = 8 seeds, 3 tests
    two = _table(jitter=0.01)
    assert not summarise_setup("x", setup, two[two.seed < 2])["transfer_testable"]


def test_a_setup_with_four_nonzero_differences_is_not_testable(setup):
    # 8 complete pairs, but kd equals the control on 4 seeds: 4 non-zero differences, best p 1/16 > 0.05
    r = _table(jitter=0.01)
    for s in range(4):
        for col in ("agreement", "pos_agreement", "neg_agreement"):
            r.loc[(r.arm == "kd") & (r.kd_weight == 0.9) & (r.seed == s), col] = \
                r.loc[(r.arm == "control") & (r.seed == s), col].item()
    s = summarise_setup("x", setup, r)
    assert s["n_seeds"] == N and s["transfer_n_nonzero"] == 4 and s["transfer_min_p"] == pytest.approx(1 / 16)
    assert not s["transfer_testable"] and not s["significant_transfer"]


def test_readings_table(setup):
    t = readings_table(_table(jitter=0.01), setup)
    assert list(t.kd_weight) == [0.9, 0.9, 0.1, 0.1] and list(t.arm) == ["kd", "rcd", "kd", "rcd"]
    assert t.loc[0, "agreement_gain"] == pytest.approx(8.0, abs=0.5) and t.loc[2, "agreement_gain"] == pytest.approx(0.0, abs=1e-9)


def test_convergence_and_flatness():
    assert is_flat([2.0, 1.0, 0.5, 0.45, 0.44]) and not is_flat([2.0, 1.5, 1.0, 0.5, 0.1])
    assert not is_flat([1.0, 1.0]) and not is_flat([1.0, 1.2, 1.3])
    r = main_arms(_table())
    logs = {h: [{"loss": 2.0}, {"loss": 1.0}, {"loss": 0.5}, {"loss": 0.49}, {"loss": 0.48}] for h in r.hash}
    c = convergence(r, logs)
    assert c.loc["loss_flattened", "kd"] == N and c.loc["final_loss", "teacher"] == pytest.approx(0.48)


def test_arm_table_formats():
    t = arm_table(main_arms(_table()))
    assert t.loc["seeds", "kd"] == str(N) and t.loc["accuracy", "kd"] == "80.00 (0.00)"
    assert t.loc["agreement", "teacher"] == "n/a"
    assert fmt_mean_sem([0.00123, 0.00125]) == "0.00124 (1e-05)"
