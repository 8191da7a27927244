"""The pairwise judge protocol: which of two B′ completes A : A′ :: B : ? better, asked twice.

For one triplet and two methods' B′ the judge sees A, A′, B and the two candidates and answers
"1", "2" (or, where the judge allows it, "tie"). It is asked twice with the candidates' order
swapped; the first order is drawn from the user's seed and the pair's names (triplet, methods, judge).
Both asks are stored (the `judgements` table: prompt, raw answer, parsed choice, error). The
pair's verdict is the method both answers chose; answers that flip with the order make the pair
*inconsistent*; an answer that cannot be parsed is a recorded failure and no vote.

The answer format is strict: the reply's last non-empty line must be "Answer: 1" or "Answer: 2"
(or "Answer: tie" where the judge offers ties); surrounding whitespace, a trailing period, markdown
bold and the case of the words are tolerated, nothing else ("neither", "1 or 2", a number in prose,
a bare "1" all fail). Every string stored from a judge passes through `redact`, so a key an
endpoint echoes back is never written.

Win rate of `method` against `opponent` = wins / consistent pairs (a tie is a consistent pair
that is no win), with Wilson's 95 % interval (evaluation.scoring.stats), per category of edit and for the
whole partition (`all`), each pair shown from both sides; the inconsistency rate =
inconsistent / (consistent + inconsistent) stands beside it. evaluation.scoring.ranking turns the same
votes into one ranking.

Judges implement `JudgeBackend`: `judge_id` and `answer(question) -> str` (the raw text); a judge
that holds a credential lists it in an optional `secrets` attribute, redacted from every row. The toy
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

from evaluation.scoring.stats import estimate

PROMPT = ("The first three images are A, A′ and B: A′ is A after an edit. The next two are candidates "
          "1 and 2 for B′, the image that is to B what A′ is to A (the same edit applied to B, the rest "
          "of B kept). Which candidate completes the analogy better? The last line of your reply must be "
          "exactly 'Answer: 1' or 'Answer: 2'{tie}, with nothing else on it.")
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


# the one accepted final line; markdown bold/italics and a trailing period are tolerated
_FINAL_LINE = re.compile(r"[*_]*\s*answer\s*:\s*[*_]*\s*(1|2|tie)\s*[*_]*\s*\.?\s*[*_]*", re.IGNORECASE)


def parse_answer(raw: str | None, allow_tie: bool = True) -> str:
    """'1', '2' or 'tie' from the last non-empty line of a judge's text, which must be 'Answer: 1',
    'Answer: 2' or (where `allow_tie`) 'Answer: tie'. Raises ValueError (the reason stored as the
    ask's error) for anything else: no answer is ever guessed from prose."""
    if not isinstance(raw, str):
        raise ValueError(f"no choice in the answer: the judge gave {type(raw).__name__}, not text")
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    found = _FINAL_LINE.fullmatch(lines[-1]) if lines else None
    if found is None:
        last = lines[-1][:80] if lines else ""
        raise ValueError(f"no choice in the answer: its last line {last!r} is not 'Answer: 1' or 'Answer: 2'")
    choice = found.group(1).lower()
    if choice == TIE and not allow_tie:
        raise ValueError("answered 'tie', which this judge was not offered")
    return choice


REDACTED = "[redacted]"
# credential shapes an endpoint may echo; group 1 is the label kept before the secret
_CREDENTIALS = [
    re.compile(r"""((?:proxy-)?authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^\s"',;}&]+""",
               re.IGNORECASE),
    re.compile(r"""(\b(?:x-)?api[_-]?key["']?\s*[:=]\s*["']?)[^\s"',;}&]+""", re.IGNORECASE),
    re.compile(r"""(\b(?:access[_-]?token|secret[_-]?key|client[_-]?secret)["']?\s*[:=]\s*["']?)[^\s"',;}&]+""",
               re.IGNORECASE),
    re.compile(r"([?&](?:key|token|sig|signature)=)[^&\s\"'#]+", re.IGNORECASE),
    re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE),
    re.compile(r"()\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"()\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password in a URL
]


def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """`text` with each of `secrets` (the exact values, e.g. the judge's API key) and every common
    credential shape (`Authorization: …`, `Bearer …`, `sk-…` keys, `AKIA…` ids, `api_key=…`,
    `?key=…`, a URL's `user:password@`) replaced by REDACTED; None stays None."""
    if text is None:
        return None
    for secret in sorted(filter(None, secrets), key=len, reverse=True):  # a longer key first: it may hold a shorter
        text = text.replace(secret, REDACTED)
    for shape in _CREDENTIALS:
        text = shape.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def chosen(picked: str, first: str, second: str) -> str:
    """The choice an answer makes: TIE, or the method shown `first` ('1') or `second` ('2')."""
    return TIE if picked == TIE else first if picked == "1" else second


@dataclass(frozen=True)
class Candidate:
    method: str
    config_hash: str
    image: Image.Image
    digest: str | None = None  # the image's hash (its blob name), where it is stored


def judge_pair(judge: JudgeBackend, triplet_id: str, a: Image.Image, a_prime: Image.Image, b: Image.Image,
               x: Candidate, y: Candidate, seed: int, truth: dict | None = None) -> list[dict]:
    """Two `judgements` rows for candidates x (the method) and y (its opponent): one per order,
    the first order drawn from `seed` and the pair's names."""
    # a str seed is hashed (SHA-512) by `random`: the same order in every run and process
    rng = random.Random(":".join(map(str, (seed, "pairwise", triplet_id, x.method, x.config_hash, y.method,
                                           y.config_hash, judge.judge_id))))
    orders = [(x, y), (y, x)]
    if rng.random() < 0.5:
        orders.reverse()
    prompt = prompt_text(judge.allow_tie)
    secrets = tuple(getattr(judge, "secrets", ()))  # what a judge holds that must never be stored
    rows = []
    for ask, (first, second) in enumerate(orders, start=1):
        question = Question(a, a_prime, b, first.image, second.image, prompt, truth or {})
        raw, choice, error = None, None, None
        try:
            answer = judge.answer(question)
            raw = answer if isinstance(answer, str) else None  # a column of text: anything else is no answer
            picked = parse_answer(answer, judge.allow_tie)
            choice = chosen(picked, first.method, second.method)
        except Exception as exc:  # one failed ask is a recorded failure, never a vote
            error = (str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}") or type(exc).__name__
        raw, error = redact(raw, secrets), redact(" ".join(error.split()) if error else None, secrets)  # one line
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
