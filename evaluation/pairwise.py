"""The pairwise judge protocol: which of two B′ completes A : A′ :: B : ? better, asked twice.

For one triplet and two methods' B′ the judge sees A, A′, B and the two candidates and answers
"1", "2" (or, where the judge allows it, "tie"). It is asked twice with the candidates' order
swapped; the first order is drawn from the user's seed and the content (ops.cache.content_seed).
Both asks are stored (the `judgements` table: prompt, raw answer, parsed choice, error). The
pair's verdict is the method both answers chose; answers that flip with the order make the pair
*inconsistent*; an answer that cannot be parsed is a recorded failure and no vote.

Win rate of `method` against `opponent` = wins / consistent pairs (a tie is a consistent pair
that is no win), with Wilson's 95 % interval (evaluation.stats), per category of edit and for the
whole partition (`all`), each pair shown from both sides; the inconsistency rate =
inconsistent / (consistent + inconsistent) stands beside it. evaluation.ranking turns the same
votes into one ranking.

Judges implement `JudgeBackend`: `judge_id` and `answer(question) -> str` (the raw text). The toy
judge (`ToyPairJudge`) reads each candidate's attributes with the toy world's judge CLIP and
prefers the one that matches more of B′gt's attributes.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from evaluation.stats import estimate
from ops.cache import content_seed

PROMPT = ("The first three images are A, A′ and B: A′ is A after an edit. The next two are candidates "
          "1 and 2 for B′, the image that is to B what A′ is to A (the same edit applied to B, the rest "
          "of B kept). Which candidate completes the analogy better? Answer with one line: "
          "'Answer: 1' or 'Answer: 2'{tie}.")
TIE = "tie"


def prompt_text(allow_tie: bool) -> str:
    return PROMPT.format(tie=" (or 'Answer: tie' if they are equally good)" if allow_tie else "")


@dataclass
class Question:
    """What one ask shows: the example pair, the query and two candidates, in this order.
    `truth` is ground truth only the toy judge reads (the triplet's attributes)."""

    a: Image.Image
    a_prime: Image.Image
    b: Image.Image
    first: Image.Image
    second: Image.Image
    prompt: str
    truth: dict = field(default_factory=dict)


class JudgeBackend(Protocol):
    judge_id: str
    allow_tie: bool

    def answer(self, question: Question) -> str: ...


_ANSWER = re.compile(r"answer\s*[:\-]?\s*\**\s*(1|2|one|two|first|second|tie)\b", re.IGNORECASE)
_WORDS = {"1": "1", "one": "1", "first": "1", "2": "2", "two": "2", "second": "2", "tie": TIE}


def parse_answer(raw: str) -> str:
    """'1', '2' or 'tie' from a judge's text: the last 'Answer: …' line, else a reply that is just
    the choice. Raises ValueError (the reason stored as the ask's error) otherwise."""
    found = _ANSWER.findall(raw or "")
    if found:
        return _WORDS[found[-1].lower()]
    bare = (raw or "").strip().strip(".*'\"").lower()
    if bare in _WORDS:
        return _WORDS[bare]
    raise ValueError(f"no choice in the answer {(raw or '')[:80]!r}")


@dataclass(frozen=True)
class Candidate:
    method: str
    config_hash: str
    image: Image.Image
    digest: str | None = None  # the image's hash (its blob name), where it is stored


def judge_pair(judge: JudgeBackend, triplet_id: str, a: Image.Image, a_prime: Image.Image, b: Image.Image,
               x: Candidate, y: Candidate, seed: int, truth: dict | None = None) -> list[dict]:
    """Two `judgements` rows for candidates x (the method) and y (its opponent): one per order,
    the first order drawn from `seed` and the content."""
    rng = random.Random(content_seed(seed, "pairwise", triplet_id, x.method, x.config_hash, y.method,
                                     y.config_hash, judge.judge_id))
    orders = [(x, y), (y, x)]
    if rng.random() < 0.5:
        orders.reverse()
    prompt = prompt_text(judge.allow_tie)
    rows = []
    for ask, (first, second) in enumerate(orders, start=1):
        question = Question(a, a_prime, b, first.image, second.image, prompt, truth or {})
        raw, choice, error = None, None, None
        try:
            raw = judge.answer(question)
            picked = parse_answer(raw)
            if picked == TIE and not judge.allow_tie:
                raise ValueError("answered 'tie', which this judge was not offered")
            choice = TIE if picked == TIE else (first if picked == "1" else second).method
        except Exception as exc:  # one failed ask is a recorded failure, never a vote
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        rows.append({"triplet_id": triplet_id, "method": x.method, "config_hash": x.config_hash,
                     "opponent": y.method, "opponent_config_hash": y.config_hash, "b_prime_hash": x.digest,
                     "opponent_b_prime_hash": y.digest, "seed": seed, "judge_id": judge.judge_id,
                     "ask": ask, "shown_first": first.method, "prompt": prompt, "raw": raw, "choice": choice,
                     "consistent": None, "error": error})
    if not any(r["error"] for r in rows):
        consistent = rows[0]["choice"] == rows[1]["choice"]
        for r in rows:
            r["consistent"] = consistent
    return rows


WIN_RATE_COLUMNS = ("dataset", "judge", "category", "method", "opponent", "pairs", "wins", "losses", "ties",
                    "inconsistent", "failed", "win_rate", "ci_low", "ci_high", "inconsistency_rate")
ALL = "all"  # the category of the whole partition


def pair_outcomes(rows: Iterable[dict]) -> dict[tuple, dict]:
    """Each judged pair's outcome from its two `judgements` rows (each with `dataset` and, optionally,
    `category`): {(dataset, judge, triplet, method, opponent): {category, outcome}}, the outcome being
    the method both asks chose, TIE, "inconsistent" or "failed" (an ask failed or is missing). A row's
    `task` (the triplet within its shard) defaults to its triplet id."""
    asks = defaultdict(list)
    for r in rows:
        task = r.get("task", r["triplet_id"])
        asks[(r["dataset"], r["judge_id"], task, r["method"], r["opponent"])].append(r)
    out = {}
    for key, pair in asks.items():
        if any(r["error"] for r in pair) or len(pair) != 2:
            outcome = "failed"
        elif not pair[0]["consistent"]:
            outcome = "inconsistent"
        else:
            outcome = pair[0]["choice"]
        out[key] = {"category": pair[0].get("category"), "outcome": outcome}
    return out


def win_rates(rows: Iterable[dict]) -> list[dict]:
    """Per dataset × judge × category × method × opponent, from `judgements` rows (each with `dataset`,
    optionally `category`): every pair counted once for the whole partition (category "all") and once
    for its triplet's category, and shown from both sides (method vs opponent and opponent vs method)."""
    tally = defaultdict(lambda: defaultdict(int))
    for (dataset, judge, _, method, opponent), pair in pair_outcomes(rows).items():
        outcome = pair["outcome"]
        for category in {ALL, pair["category"] or ALL}:
            for me, them in ((method, opponent), (opponent, method)):
                count = tally[(dataset, judge, category, me, them)]
                count["pairs"] += 1
                count[outcome if outcome in ("failed", "inconsistent") else "ties" if outcome == TIE
                      else "wins" if outcome == me else "losses"] += 1
    out = []
    for (dataset, judge, category, method, opponent), count in sorted(tally.items()):
        consistent = count["wins"] + count["losses"] + count["ties"]
        row = {"dataset": dataset, "judge": judge, "category": category, "method": method, "opponent": opponent,
               **{k: count[k] for k in ("pairs", "wins", "losses", "ties", "inconsistent", "failed")},
               "win_rate": None, "ci_low": None, "ci_high": None, "inconsistency_rate": None}
        if consistent:
            e = estimate([1.0] * count["wins"] + [0.0] * (consistent - count["wins"]), binary=True)
            row |= {"win_rate": e.mean, "ci_low": e.ci95_low, "ci_high": e.ci95_high}
        if consistent + count["inconsistent"]:
            row["inconsistency_rate"] = count["inconsistent"] / (consistent + count["inconsistent"])
        out.append(row)
    return out


class ToyPairJudge:
    """The toy world's pairwise judge: the judge CLIP reads both candidates' attributes and the one
    that matches more of B′gt's (the changed attribute at A′'s value, the others kept from B) wins;
    equal counts are a tie. It reads pixels only, so the order it is shown things in cannot matter."""

    allow_tie = True

    def __init__(self, judge):
        self.judge = judge
        self.judge_id = "toy-judge-clip"  # the toy world's judge CLIP (models/toy/weights/judge_clip)

    def answer(self, question: Question) -> str:
        want = question.truth.get("b_prime_gt")
        if not want:
            raise ValueError("the toy judge needs the triplet's toy attributes (extra.attrs)")
        reads = self.judge.read([question.first, question.second])
        matches = [sum(read[k] == v for k, v in want.items()) for read in reads]
        verdict = "1" if matches[0] > matches[1] else "2" if matches[1] > matches[0] else TIE
        return (f"Candidate 1 matches {matches[0]} of {len(want)} attributes of B′, candidate 2 matches "
                f"{matches[1]}.\nAnswer: {verdict}")
