"""The pairwise protocol (evaluation.scoring.pairwise) with judges whose answers the test controls: the
swapped order, an answer that flips with the order, a parse failure, ties; and the toy judge."""

import numpy as np
import pytest
from PIL import Image

from evaluation.scoring.pairwise import Candidate, ToyPairJudge, judge_pair, parse_answer, win_rates


def solid(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


A, A2, B = solid(10), solid(20), solid(30)
GOOD, BAD = Candidate("ours", "h1", solid(200)), Candidate("theirs", "h2", solid(100))


class PrefersBrighter:
    """Picks the brighter candidate, wherever it is shown: an order-consistent judge."""

    judge_id, allow_tie = "brighter", False

    def __init__(self):
        self.asked = []

    def answer(self, q):
        self.asked.append(np.asarray(q.first)[0, 0, 0])
        brighter_first = np.asarray(q.first).mean() > np.asarray(q.second).mean()
        return "Answer: 1" if brighter_first else "I'd say the second.\nAnswer: 2"


class AlwaysFirst:
    """Picks whatever is shown first: every answer flips when the order is swapped."""

    judge_id, allow_tie = "first", False

    def answer(self, q):
        return "Answer: 1"


class Rambles:
    judge_id, allow_tie = "rambles", False

    def answer(self, q):
        return "Both images are lovely."


def judged(judge, triplets=("t0",), seed=0, x=GOOD, y=BAD):
    return [r | {"dataset": "d"} for t in triplets for r in judge_pair(judge, t, A, A2, B, x, y, seed)]


def test_each_pair_is_asked_twice_with_the_order_swapped_and_the_first_order_drawn_from_the_seed():
    judge = PrefersBrighter()
    rows = judged(judge, triplets=[f"t{i}" for i in range(16)])
    for first, second in zip(rows[::2], rows[1::2]):
        assert (first["ask"], second["ask"]) == (1, 2) and first["shown_first"] != second["shown_first"]
    def first_orders(rows):
        return [r["shown_first"] for r in rows if r["ask"] == 1]

    drawn = first_orders(rows)
    assert {"ours", "theirs"} == set(drawn)  # the seed draws both orders over the triplets
    assert drawn == first_orders(judged(PrefersBrighter(), [f"t{i}" for i in range(16)]))
    assert drawn != first_orders(judged(PrefersBrighter(), [f"t{i}" for i in range(16)], seed=1))
    assert len(judge.asked) == 32 and all(r["choice"] == "ours" and r["consistent"] for r in rows)
    rate, mirror = win_rates(rows)  # ours vs theirs, and the same pairs seen from theirs
    assert (rate["wins"], rate["losses"], rate["inconsistent"], rate["win_rate"]) == (16, 0, 0, 1.0)
    assert (mirror["method"], mirror["wins"], mirror["losses"], mirror["win_rate"]) == ("theirs", 0, 16, 0.0)
    assert 0.7 < rate["ci_low"] < 1.0 == rate["ci_high"]  # Wilson at 16 of 16


def test_an_answer_that_flips_with_the_order_is_inconsistent_and_no_vote():
    rows = judged(AlwaysFirst(), triplets=["t0", "t1", "t2"])
    assert all(r["consistent"] is False for r in rows)
    assert {r["choice"] for r in rows if r["triplet_id"] == "t0"} == {"ours", "theirs"}
    rate, mirror = win_rates(rows)
    assert (rate["pairs"], rate["inconsistent"], rate["wins"], rate["losses"]) == (3, 3, 0, 0)
    assert (mirror["pairs"], mirror["inconsistent"]) == (3, 3)
    assert rate["win_rate"] is None and rate["inconsistency_rate"] == 1.0


def test_an_unparsable_answer_is_a_recorded_failure_never_a_vote():
    rows = judged(Rambles())
    assert all(r["choice"] is None and "no choice in the answer" in r["error"] for r in rows)
    assert rows[0]["raw"] == "Both images are lovely." and rows[0]["consistent"] is None
    rate, _ = win_rates(rows)
    assert (rate["failed"], rate["wins"], rate["losses"], rate["ties"], rate["inconsistent"]) == (1, 0, 0, 0, 0)
    assert rate["win_rate"] is None and rate["inconsistency_rate"] is None


def test_a_judge_that_raises_fails_that_ask_alone():
    class Flaky(PrefersBrighter):
        judge_id = "flaky"

        def answer(self, q):
            if len(self.asked) == 1:
                self.asked.append(None)
                raise TimeoutError("the endpoint timed out")
            return super().answer(q)

    rows = judged(Flaky())
    assert rows[0]["error"] is None and rows[1]["error"] == "TimeoutError: the endpoint timed out"
    assert win_rates(rows)[0]["failed"] == 1


@pytest.mark.parametrize("raw, want", [("Answer: 1", "1"), ("answer: 2", "2"), ("**Answer:** 2", "2"),
                                       ("**Answer: 1**", "1"), (" Answer: 2. \n", "2"), ("Answer: tie", "tie"),
                                       ("Candidate 1 has 2 errors.\nAnswer: 1", "1")])
def test_parse_answer(raw, want):
    assert parse_answer(raw) == want


@pytest.mark.parametrize("raw", ["", "Answer: 3", "candidate one looks best", None, "1.", "Second", "answer - 2",
                                 "Answer: 1\n...on reflection, Answer: 2", "Answer: 2\nor maybe 1"])
def test_parse_answer_refuses(raw):
    with pytest.raises(ValueError, match="no choice in the answer"):
        parse_answer(raw)


def test_a_tie_from_a_judge_not_offered_ties_is_a_failure_and_ties_count_as_consistent_non_wins():
    class Ties(PrefersBrighter):
        def answer(self, q):
            return "Answer: tie"

    assert all("not offered" in r["error"] for r in judged(Ties()))
    Ties.allow_tie = True
    rate, mirror = win_rates(judged(Ties(), triplets=["t0", "t1"]))
    assert (rate["ties"], rate["wins"], rate["win_rate"], rate["inconsistency_rate"]) == (2, 0, 0.0, 0.0)
    assert (mirror["ties"], mirror["wins"], mirror["win_rate"]) == (2, 0, 0.0)


def test_the_toy_judge_prefers_the_candidate_matching_more_of_b_prime_gt():
    from models.loaders import load_judge
    from models.profiles import get_profile
    from models.toy.world import Scene, render

    want = {"shape": "star", "colour": "red", "background": "black", "size": "large"}
    right = render(Scene(**want), seed=0)
    wrong = render(Scene(**(want | {"colour": "blue", "shape": "circle"})), seed=0)
    judge = ToyPairJudge(load_judge(get_profile("toy")))
    truth = {"b_prime_gt": want}
    rows = [r | {"dataset": "toy"} for r in judge_pair(judge, "t", A, A2, B, Candidate("ours", "h1", right),
                                                       Candidate("theirs", "h2", wrong), 0, truth)]
    assert [r["choice"] for r in rows] == ["ours", "ours"] and all(r["consistent"] for r in rows)
    assert "matches 4 of 4" in " ".join(r["raw"] for r in rows)
    same = judge_pair(judge, "t", A, A2, B, Candidate("ours", "h1", right), Candidate("theirs", "h2", right), 0,
                      truth)
    assert [r["choice"] for r in same] == ["tie", "tie"]


def test_win_rates_count_each_pair_for_the_partition_and_for_its_category():
    rows = [r | {"category": c} for c, t in (("size", "t0"), ("colour", "t1"), ("colour", "t2"))
            for r in judged(PrefersBrighter(), triplets=[t])]
    rates = {(r["category"], r["method"]): r for r in win_rates(rows)}
    assert set(rates) == {(c, m) for c in ("all", "size", "colour") for m in ("ours", "theirs")}
    assert [rates[(c, "ours")]["wins"] for c in ("all", "size", "colour")] == [3, 1, 2]
    assert [rates[(c, "theirs")]["losses"] for c in ("all", "size", "colour")] == [3, 1, 2]
