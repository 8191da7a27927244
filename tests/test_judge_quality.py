"""How far to trust the judge (evaluation.scoring.judge_quality): inconsistency and position bias on hand-made
`judgements` rows, and agreement with a hand-made 4-choice survey, κ worked by hand."""

import json

import pytest

from evaluation.scoring.judge_quality import AGREEMENT_COLUMNS, QUALITY_COLUMNS, judge_agreement, judge_quality


def pair(triplet, method, opponent, first, second, *, judge="j", dataset="d", errors=(None, None)):
    """The two asks of one pair: ask 1 shows `method` first and chose `first`, ask 2 shows `opponent` first and
    chose `second` (None where that ask failed, with an error)."""
    rows = [{"dataset": dataset, "judge_id": judge, "triplet_id": triplet, "method": method, "opponent": opponent,
             "ask": ask, "shown_first": shown, "choice": choice, "error": error or ("boom" if choice is None else None)}
            for ask, shown, choice, error in ((1, method, first, errors[0]), (2, opponent, second, errors[1]))]
    ok = not any(r["error"] for r in rows)
    for r in rows:
        r["consistent"] = (rows[0]["choice"] == rows[1]["choice"]) if ok else None
    return rows


def pairs(n, first, second, prefix="t", **kw):
    return [r for t in range(n) for r in pair(f"{prefix}{t}", "ours", "theirs", first, second, **kw)]


def test_an_always_first_judge_is_fully_biased_and_fully_inconsistent():
    (row,) = judge_quality(pairs(10, "ours", "theirs"))  # each ask picks whatever it was shown first
    assert tuple(row) == QUALITY_COLUMNS
    assert (row["dataset"], row["judge"], row["asks"], row["failed_asks"], row["pairs"]) == ("d", "j", 20, 0, 10)
    assert (row["inconsistent"], row["inconsistency_rate"]) == (10, 1.0)
    assert (row["decided_asks"], row["first_shown_wins"], row["position_bias"]) == (20, 20, 1.0)
    assert 0.8 < row["position_bias_low"] < 1.0 == row["position_bias_high"]  # Wilson at 20 of 20: 0.839


def test_an_order_independent_judge_has_no_position_bias():
    (row,) = judge_quality(pairs(6, "ours", "ours") + pairs(4, "theirs", "theirs", prefix="u"))
    # every pair is shown once each way and the same method wins both: half the asks go to the first shown
    assert (row["decided_asks"], row["first_shown_wins"], row["position_bias"]) == (20, 10, 0.5)
    assert row["position_bias_low"] < 0.5 < row["position_bias_high"]
    assert (row["inconsistent"], row["inconsistency_rate"]) == (0, 0.0)


def test_failed_asks_and_ties_are_no_decided_asks_and_failed_pairs_no_consistency_evidence():
    rows = (pair("t0", "ours", "theirs", "ours", "ours")          # consistent, 1 of 2 to the first shown
            + pair("t1", "ours", "theirs", "ours", None)          # ask 2 failed: ask 1 still decided (first won)
            + pair("t2", "ours", "theirs", None, None)            # both failed
            + pair("t3", "ours", "theirs", "tie", "tie")          # a consistent tie: no decided ask
            + pair("t4", "ours", "theirs", "tie", "theirs"))      # tie, then the first shown: inconsistent
    (row,) = judge_quality(rows)
    assert (row["asks"], row["failed_asks"], row["pairs"]) == (10, 3, 5)
    assert (row["inconsistent"], row["inconsistency_rate"]) == (1, 1 / 3)  # of t0, t3, t4
    assert (row["decided_asks"], row["first_shown_wins"]) == (4, 3)  # t0 ×2, t1 ask 1, t4 ask 2
    assert row["position_bias"] == 0.75


def test_no_decided_ask_no_position_bias_and_no_answered_pair_no_rate():
    (row,) = judge_quality(pair("t0", "ours", "theirs", None, "tie"))
    assert (row["decided_asks"], row["position_bias"], row["position_bias_low"]) == (0, None, None)
    assert (row["inconsistent"], row["inconsistency_rate"], row["failed_asks"]) == (0, None, 1)


def test_one_row_per_dataset_and_judge():
    rows = (pairs(2, "ours", "theirs", judge="first") + pairs(3, "ours", "ours", judge="fair")
            + pairs(4, "ours", "theirs", judge="first", dataset="e"))
    out = judge_quality(rows)
    assert [(r["dataset"], r["judge"], r["pairs"], r["position_bias"]) for r in out] == [
        ("d", "fair", 3, 0.5), ("d", "first", 2, 1.0), ("e", "first", 4, 1.0)]
    assert judge_quality([]) == []


# The survey: 3 participants, 2 triplets, the 4 methods a–d shown in a different order per triplet.
#   t1: p1 → a, p2 → a, p3 → b     within a pair: a beats b, c, d; b beats c, d; c vs d 0–0 (no majority)
#   t2: p1 → c, p2 → d, p3 → a     a beats b, c beats b, d beats b; a–c, a–d, c–d 1–1 (no majority)
SHOWN = {"t1": ["c", "a", "d", "b"], "t2": ["b", "d", "a", "c"]}
PICKS = {"t1": ["a", "a", "b"], "t2": ["c", "d", "a"]}


def survey(survey_id="s1", dataset="d"):
    return [{"dataset": dataset, "survey_id": survey_id, "participant": f"p{k + 1}", "question_id": f"q{q + 1}",
             "triplet_id": t, "choice": SHOWN[t].index(m) + 1, "method": m, "candidates": json.dumps(SHOWN[t])}
            for q, t in enumerate(SHOWN) for k, m in enumerate(PICKS[t])]


def judge_rows(judge="j"):
    # the judge's verdict (both asks agree) / why the pair is no task       judge's first wins, people's first wins
    return (pair("t1", "a", "b", "a", "a", judge=judge)                     # task, agree        1, 1
            + pair("t1", "a", "c", "c", "c", judge=judge)                   # task, disagree     0, 1
            + pair("t1", "a", "d", "a", "d", judge=judge)                   # inconsistent: out
            + pair("t1", "b", "c", "tie", "tie", judge=judge)               # a judge's tie: out
            + pair("t1", "b", "d", "b", None, judge=judge)                  # a failed ask: out
            + pair("t1", "c", "d", "c", "c", judge=judge)                   # people 0–0: out
            + pair("t2", "a", "b", "a", "a", judge=judge)                   # task, agree        1, 1
            + pair("t2", "b", "c", "b", "b", judge=judge)                   # task, disagree     1, 0
            + pair("t2", "b", "d", "d", "d", judge=judge)                   # task, agree        0, 0
            + pair("t2", "c", "d", "c", "c", judge=judge)                   # people 1–1: out
            + pair("t9", "a", "b", "a", "a", judge=judge))                  # not in the survey: out


def test_agreement_with_the_human_majority_within_each_pair_and_kappa_by_hand():
    (row,) = judge_agreement(judge_rows(), survey(), resamples=400)
    assert tuple(row) == AGREEMENT_COLUMNS
    assert (row["dataset"], row["judge"], row["survey_id"]) == ("d", "j", "s1")
    assert (row["tasks"], row["agreements"]) == (5, 3)
    assert row["agreement_rate"] == pytest.approx(0.6) and row["agreement_low"] < 0.6 < row["agreement_high"]
    # "first wins" labels, judge × people:       people first  people second
    #                        judge first               2             1        → 3
    #                        judge second              1             1        → 2
    #                                                  3             2          n = 5
    # po = 3/5; pe = 3/5 · 3/5 + 2/5 · 2/5 = 13/25; κ = (15/25 − 13/25) / (1 − 13/25) = 2/12 = 1/6
    assert row["kappa"] == pytest.approx(1 / 6)
    # resampling triplets: t1 twice → κ 0 (people always "first"), t2 twice → κ 0.4, both → 1/6
    assert row["kappa_low"] == pytest.approx(0.0) and row["kappa_high"] == pytest.approx(0.4)
    assert row["kappa_low"] <= row["kappa"] <= row["kappa_high"]


def test_kappa_is_undefined_when_both_raters_always_give_the_same_label():
    # a second judge decides only the two a–b pairs, as the people do: agreement 2 of 2, pe = 1
    rows = judge_rows() + pair("t1", "a", "b", "a", "a", judge="k") + pair("t2", "a", "b", "a", "a", judge="k")
    out = judge_agreement(rows, survey(), resamples=200)
    assert [(r["judge"], r["tasks"], r["agreements"]) for r in out] == [("j", 5, 3), ("k", 2, 2)]
    assert (out[1]["agreement_rate"], out[1]["kappa"], out[1]["kappa_low"], out[1]["kappa_high"]) == (1.0, None,
                                                                                                      None, None)


def test_a_pair_judged_both_ways_is_one_task_and_only_where_all_four_asks_agree():
    base = judge_agreement(judge_rows(), survey(), resamples=50)[0]
    again = judge_agreement(judge_rows() + pair("t1", "b", "a", "a", "a"), survey(), resamples=50)[0]
    assert (again["tasks"], again["agreements"]) == (base["tasks"], base["agreements"]) == (5, 3)
    split = judge_agreement(judge_rows() + pair("t1", "b", "a", "b", "b"), survey(), resamples=50)[0]
    assert (split["tasks"], split["agreements"]) == (4, 2)  # t1 a–b is no longer decided


def test_surveys_are_separate_rows_and_no_overlap_is_nothing():
    out = judge_agreement(judge_rows(), survey("s1") + survey("s2"), resamples=50)
    assert [(r["survey_id"], r["tasks"]) for r in out] == [("s1", 5), ("s2", 5)]
    # a survey that showed a, b, c and e on t1 (picks c, c, e): c beats a 2–0; c–d is no task, d was not shown
    other = [{"dataset": "d", "survey_id": "s3", "participant": f"p{k}", "question_id": "q1", "triplet_id": "t1",
              "choice": 1, "method": m, "candidates": json.dumps(["a", "b", "c", "e"])} for k, m in enumerate("cce")]
    (row,) = judge_agreement(judge_rows(), other, resamples=50)
    assert (row["survey_id"], row["tasks"], row["agreements"], row["kappa"]) == ("s3", 1, 1, None)
    assert judge_agreement(judge_rows(), survey(dataset="other")) == []  # the same triplet ids, another dataset
    assert judge_agreement([r for r in judge_rows() if r["triplet_id"] == "t9"], survey()) == []
    assert judge_agreement(judge_rows(), []) == [] and judge_agreement([], survey()) == []


def test_the_bootstrap_is_seeded_and_needs_two_triplets():
    first = judge_agreement(judge_rows(), survey(), resamples=100, seed=7)
    assert first == judge_agreement(judge_rows(), survey(), resamples=100, seed=7)
    one_triplet = judge_agreement([r for r in judge_rows() if r["triplet_id"] != "t2"], survey())[0]
    assert one_triplet["tasks"] == 2 and one_triplet["kappa"] == 0.0 and one_triplet["kappa_low"] is None
