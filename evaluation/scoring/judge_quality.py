"""How far to trust the pairwise judge (evaluation.scoring.pairwise): its own consistency and its agreement with people.

`judge_quality`, per dataset × judge, from `judgements` rows (each with `dataset`):
- inconsistency rate = pairs whose two asks (order swapped) chose differently / pairs with both asks answered;
- position bias = the share of decided asks (answered, not a tie) won by the candidate shown first: 0.5 is an
  unbiased judge, 1.0 one that always picks the first; with its 95 % Wilson interval (evaluation.scoring.stats).

`judge_agreement`, per dataset × judge × survey, against the 4-choice human study (evaluation.scoring.survey): a *task*
is a triplet × method pair {i, j} that the judge decided (both orders chose the same method, no tie, no failed
ask) and on which the people who saw both i and j picked one more often than the other (the human majority
within the pair; a tie among people is no task). Agreement rate = tasks where the judge's winner is the
people's, with its Wilson interval. Cohen's κ = (po − pe) / (1 − pe) corrects it for chance: po the observed
agreement, pe the agreement two raters with the same marginals ("the alphabetically first of the pair wins" or
"the second wins") would reach at random; κ = 0 is chance level, 1 perfect, None when pe = 1 (both raters
always gave the same label). Its 95 % interval is a percentile bootstrap over triplets.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from evaluation.scoring.pairwise import TIE
from evaluation.scoring.stats import estimate

QUALITY_COLUMNS = ("dataset", "judge", "asks", "failed_asks", "pairs", "inconsistent", "inconsistency_rate",
                   "decided_asks", "first_shown_wins", "position_bias", "position_bias_low", "position_bias_high")
AGREEMENT_COLUMNS = ("dataset", "judge", "survey_id", "tasks", "agreements", "agreement_rate", "agreement_low",
                     "agreement_high", "kappa", "kappa_low", "kappa_high")
MIN_DEFINED = 0.2  # the share of bootstrap resamples with a defined κ below which κ gets no interval


def _wilson(hits: int, n: int) -> tuple[float | None, float | None, float | None]:
    if not n:
        return None, None, None
    e = estimate([1.0] * hits + [0.0] * (n - hits), binary=True)
    return e.mean, e.ci95_low, e.ci95_high


def _answered(pair: list[dict]) -> bool:
    """Both asks of one (triplet, method, opponent) are there and neither failed."""
    return len(pair) == 2 and not any(r["error"] for r in pair)


def judge_quality(judgements: Iterable[dict]) -> list[dict]:
    """One row of QUALITY_COLUMNS per dataset × judge, sorted by both."""
    groups: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in judgements:
        groups[(r["dataset"], r["judge_id"])][(r["triplet_id"], r["method"], r["opponent"])].append(r)
    out = []
    for (dataset, judge), pairs in sorted(groups.items()):
        asks = [r for pair in pairs.values() for r in pair]
        answered = [pair for pair in pairs.values() if _answered(pair)]
        inconsistent = sum(pair[0]["choice"] != pair[1]["choice"] for pair in answered)
        decided = [r for r in asks if not r["error"] and r["choice"] not in (None, TIE)]
        first_wins = sum(r["choice"] == r["shown_first"] for r in decided)
        bias, low, high = _wilson(first_wins, len(decided))
        out.append(dict(zip(QUALITY_COLUMNS, (
            dataset, judge, len(asks), sum(bool(r["error"]) for r in asks), len(pairs), inconsistent,
            inconsistent / len(answered) if answered else None, len(decided), first_wins, bias, low, high))))
    return out


def _verdicts(judgements: Iterable[dict]) -> dict[tuple, dict[tuple, dict[frozenset, str]]]:
    """{(dataset, judge): {(dataset, triplet_id): {frozenset({i, j}): winner}}} for the pairs decided
    consistently. A pair judged in both directions (i vs j and j vs i) counts once, and only where all
    four asks chose the same method."""
    asks: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in judgements:
        asks[(r["dataset"], r["judge_id"], r["triplet_id"], frozenset((r["method"], r["opponent"])))][
            (r["method"], r["opponent"])].append(r)
    out: dict[tuple, dict[tuple, dict[frozenset, str]]] = defaultdict(lambda: defaultdict(dict))
    for (dataset, judge, triplet, pair), directed in asks.items():
        choices = {r["choice"] for rows in directed.values() for r in rows}
        if len(pair) == 2 and all(_answered(rows) for rows in directed.values()) and len(choices) == 1:
            (winner,) = choices
            if winner in pair:  # not a tie
                out[(dataset, judge)][(dataset, triplet)][pair] = winner
    return out


def _kappa(n, agree, first_j, first_h):
    """Cohen's κ from counts (arrays or ints): n tasks, agree of them labelled alike, first_j and first_h labelled
    "first wins" by the judge and by the people. n·agree − chance and n² − chance are po − pe and 1 − pe times n²
    (chance = n²·pe = first_j·first_h + second_j·second_h), so κ is exact, and undefined where n² == chance."""
    chance = first_j * first_h + (n - first_j) * (n - first_h)
    return n * agree - chance, n * n - chance


def judge_agreement(judgements: Iterable[dict], answers: Iterable[dict], *, resamples: int = 1000,
                    seed: int = 0) -> list[dict]:
    """One row of AGREEMENT_COLUMNS per dataset × judge × survey_id with at least one task, sorted; [] where
    the judge and the people share no task."""
    verdicts = _verdicts(judgements)
    # (dataset, triplet_id) → survey_id → [(the methods shown, the one picked)]
    surveys: dict[tuple, dict[str, list[tuple[set, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in answers:
        shown = r["candidates"]
        shown = set(json.loads(shown) if isinstance(shown, str) else shown)
        surveys[(r["dataset"], r["triplet_id"])][r["survey_id"]].append((shown, r["method"]))
    out = []
    for (dataset, judge), by_triplet in sorted(verdicts.items()):
        # per survey: [(triplet, judge's winner is the pair's first, people's is, they agree)]
        tasks: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
        for key, decided in sorted(by_triplet.items()):
            for survey_id, picks in surveys.get(key, {}).items():
                for pair, winner in decided.items():
                    first, second = sorted(pair)
                    votes = [sum(m == x for shown, m in picks if pair <= shown) for x in (first, second)]
                    if votes[0] != votes[1]:
                        judged, said = int(winner == first), int(votes[0] > votes[1])
                        tasks[survey_id].append((key[1], judged, said, int(judged == said)))
        for survey_id, rows in sorted(tasks.items()):
            out.append(dict(zip(AGREEMENT_COLUMNS, (dataset, judge, survey_id, *_agreement(rows, resamples, seed)))))
    return out


def _agreement(rows: list[tuple[str, int, int, int]], resamples: int, seed: int) -> tuple:
    """(tasks, agreements, rate, low, high, κ, κ low, κ high) of one group's tasks."""
    n, agree = len(rows), sum(r[3] for r in rows)
    numerator, denominator = _kappa(n, agree, sum(r[1] for r in rows), sum(r[2] for r in rows))
    kappa = numerator / denominator if denominator else None
    low = high = None
    triplets = sorted({r[0] for r in rows})
    if kappa is not None and n >= 2 and len(triplets) >= 2 and resamples > 0:
        # per triplet: tasks, agreements, judge's and people's "first wins"; resampled triplets' sums → κ
        counts = np.zeros((len(triplets), 4), dtype=np.int64)
        for t, judged, said, same in rows:
            counts[triplets.index(t)] += (1, same, judged, said)
        drawn = np.random.default_rng(seed).integers(0, len(triplets), size=(resamples, len(triplets)))
        sums = counts[drawn].sum(axis=1)
        num, den = _kappa(sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3])
        defined = den != 0
        if defined.sum() >= MIN_DEFINED * resamples:
            low, high = (float(v) for v in np.percentile(num[defined] / den[defined], [2.5, 97.5]))
    return (n, agree, *_wilson(agree, n), kappa, low, high)
