"""The pairwise judge as an asset: generations → judgements (→ `win_rates`, `rankings`, `judge_quality`
and `judge_agreement` in analogy.duckdb).

For every usable triplet, every pair of methods present in the partition (or a configured reference
method against the others, or a configured subset) is judged twice with the order swapped
(evaluation.scoring.pairwise). Every ask is a row of `judgements`, and a step stopped midway writes the asks
it made before it stops (judge_partition). A pair already judged with the same two B′,
seed and judge is reused, never asked again; the rows of pairs this run did not ask (another judge, a
subset) are kept while their B′ are the partition's current ones.
"""


import json
from functools import lru_cache
from itertools import combinations
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from evaluation.scoring.judge_backends import DEFAULT_CHAT_MODEL, DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_VLM
from evaluation.scoring.pairwise import (
    ALL,
    Candidate,
    ToyPairJudge,
    chosen,
    judge_pair,
    parse_answer,
    redact,
    win_rates,
)
from ops.registry import get_method, parse_method_spec, resolve_specs
from orchestration.assets import GROUP, generations
from orchestration.metadata import asset_args, table_metadata, win_rate_table
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource

JUDGES = ("toy", "chat", "vlm")


class JudgementsConfig(dg.Config):
    # a name other than JUDGES fails when the run is launched, not after generations
    judge: Literal[JUDGES] = Field(  # type: ignore[valid-type]  (one choice per judge)
        default="toy", description="the pairwise judge: 'toy' (the judge CLIP reads attributes; the toy profile), "
                                   "'chat' (an OpenAI-compatible endpoint: ANALOGY_JUDGE_BASE_URL, "
                                   "ANALOGY_JUDGE_API_KEY) or 'vlm' (a transformers VLM from the Hugging Face cache)")
    model: str = Field(default="", description=f"the chat judge's model (default {DEFAULT_CHAT_MODEL}) or the "
                                               f"VLM's id or folder (default {DEFAULT_VLM})")
    requests_per_minute: float = Field(default=DEFAULT_REQUESTS_PER_MINUTE, description="the chat judge's rate limit")
    reference: str = Field(default="", description="judge only this method (a label, or a method name: its first "
                           "label) against the others; empty: every pair of methods")
    methods: list[str] = Field(default=[], description="the method labels to judge among; empty: every method "
                                                       "with a B′ in the partition")

    @field_validator("reference")
    @classmethod
    def _known_method(cls, reference: str) -> str:
        if reference:  # a mistyped name fails when the run is launched, not after generations
            try:
                get_method(parse_method_spec(reference)[0])
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        return reference

    @field_validator("methods")
    @classmethod
    def _known_specs(cls, methods: list[str]) -> list[str]:
        try:
            resolve_specs(methods)  # each a method spec as the run's (`name` or `name[key=value]`)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        return methods


def pair_judge(config: JudgementsConfig, models: ModelsResource):
    """The judge backend the config names, or None where the profile has none (the toy judge needs the
    toy world)."""
    if config.judge == "chat":
        from evaluation.scoring.judge_backends import ChatEndpointJudge

        return ChatEndpointJudge(config.model or DEFAULT_CHAT_MODEL, requests_per_minute=config.requests_per_minute)
    if config.judge == "vlm":
        from evaluation.scoring.judge_backends import LocalVLMJudge

        return LocalVLMJudge(config.model or DEFAULT_VLM, models.device)
    if models.get_profile().judge is None:
        return None
    return ToyPairJudge(models.judge())


def judged_pairs(present: list[str], config: JudgementsConfig) -> list[tuple[str, str]]:
    """The method pairs to judge, each in sorted order, from the labels `present` in the partition."""
    unknown = sorted(set(config.methods) - set(present))
    if unknown:
        raise ValueError(f"methods {unknown} have no B′ in this partition ({', '.join(present)})")
    chosen = sorted(config.methods or present)
    if not config.reference:
        return list(combinations(chosen, 2))
    reference = next((m for m in chosen if m == config.reference), None) or \
        next((m for m in chosen if parse_method_spec(m)[0] == config.reference), None)
    if reference is None:
        raise ValueError(f"reference {config.reference!r} has no B′ in this partition ({', '.join(chosen)})")
    return [tuple(sorted((reference, m))) for m in chosen if m != reference]


@dg.asset(group_name=GROUP, deps=[generations], kinds={"parquet"},
          **asset_args("judgements", "evaluate", gpu=True))
def judgements(context: dg.AssetExecutionContext, config: JudgementsConfig, storage: AnalogyStorage,
               models: ModelsResource, methods: MethodsResource) -> dg.MaterializeResult:
    """Every pair of the partition's methods per triplet, asked twice with the order swapped
    (evaluation.scoring.pairwise): prompts, raw answers, choices, consistency and parse failures; pairs judged
    before are reused, and rows of pairs not asked now are kept."""
    store = storage.store()
    key = context.partition_key
    triplet_rows = store.read_table("triplets", key)
    made = [g for g in store.read_table("generations", key) if not g["error"] and g["b_prime_hash"]]
    pairs = judged_pairs(sorted({g["method"] for g in made}), config)
    judge = pair_judge(config, models)
    if judge is None:  # nothing is asked; what earlier runs judged is kept
        context.log.info(f"judgements: none made: profile {models.profile!r} has no {config.judge!r} judge")
    try:
        rows, counts = judge_partition(store, triplet_rows, made, judge, pairs if judge else [], methods.seed,
                                       store.previous_rows("judgements", key), partition=key)
    finally:
        getattr(judge, "close", lambda: None)()  # the chat judge's HTTP connections
    path = store.write_table("judgements", key, rows)
    category = {t["triplet_id"]: t["category"] for t in triplet_rows}
    rates = [r for r in win_rates([j | {"dataset": key, "category": category.get(j["triplet_id"])} for j in rows])
             if r["category"] == ALL]
    context.log.info(f"judgements: {len(pairs)} method pairs; triplet pairs {counts['asked']} asked, "
                     f"{counts['reused']} reused, {counts['kept']} kept from earlier runs")
    return dg.MaterializeResult(metadata={**table_metadata(path, rows, "judgements"), "partition": key,
                                          "win_rates": win_rate_table(rates), "method pairs": len(pairs),
                                          "pairs asked": counts["asked"], "pairs reused": counts["reused"],
                                          "pairs kept": counts["kept"],
                                          "failed_asks": sum(1 for r in rows if r["error"])})


PAIR_KEY = ("triplet_id", "method", "config_hash", "opponent", "opponent_config_hash", "b_prime_hash",
            "opponent_b_prime_hash", "seed", "judge_id")


def pair_id(row: dict) -> tuple:
    """A judged pair whichever way round it was stored: triplet, judge and the two methods."""
    return row["triplet_id"], row["judge_id"], frozenset((row["method"], row["opponent"]))


def current_rows(previous: list[dict], made: list[dict]) -> list[dict]:
    """The earlier rows whose two B′ are still the partition's current ones."""
    current = {(g["triplet_id"], g["method"]): g["b_prime_hash"] for g in made}
    return [r for r in previous if current.get((r["triplet_id"], r["method"])) == r["b_prime_hash"]
            and current.get((r["triplet_id"], r["opponent"])) == r["opponent_b_prime_hash"]]


def judge_partition(store, triplets: list[dict], made: list[dict], judge, pairs: list[tuple[str, str]], seed: int,
                    previous: list[dict] = (), partition: str | None = None) -> tuple[list[dict], dict[str, int]]:
    """(judgement rows, {asked, reused, kept} triplet-pair counts) of each method pair in `pairs` on every
    triplet of `triplets` both methods have a B′ for in `made` (the partition's usable generations). A pair
    judged before (`previous`) with the same B′, seed and judge and no failed ask is reused, not re-asked;
    earlier rows of pairs not in `pairs` (or of another judge) are kept while their B′ are current, with any
    credential redacted; a pair whose stored answers the current parser reads otherwise is asked again. If the
    loop is stopped (an interrupt, an unexpected error), the rows so far are written to `partition`'s
    `judgements` table before the exception goes on, so a re-run reuses the asks already paid for."""
    triplet_rows = {t["triplet_id"]: t for t in triplets if not t["error"]}
    secrets = tuple(getattr(judge, "secrets", ()))
    previous = [r | {"raw": redact(r["raw"], secrets), "error": redact(r["error"], secrets)}
                for r in current_rows(previous, made)]  # a key an older version stored is not written again
    made = {(g["triplet_id"], g["method"]): g for g in made}
    earlier: dict[tuple, list[dict]] = {}
    for row in previous:
        earlier.setdefault(tuple(row[k] for k in PAIR_KEY), []).append(row)
    counts = {"asked": 0, "reused": 0, "kept": 0}
    load = lru_cache(maxsize=256)(store.get_png)
    rows = []
    try:
        for triplet_id, t in triplet_rows.items():
            truth = json.loads(t["extra"] or "{}").get("attrs", {})
            for method, opponent in pairs:
                mine, theirs = made.get((triplet_id, method)), made.get((triplet_id, opponent))
                if mine is None or theirs is None:
                    continue
                pair = (triplet_id, method, mine["config_hash"], opponent, theirs["config_hash"],
                        mine["b_prime_hash"], theirs["b_prime_hash"], seed, judge.judge_id)
                done = earlier.get(pair, [])
                if len(done) == 2 and all(still_read_alike(r, judge.allow_tie) for r in done):
                    rows += done
                    counts["reused"] += 1
                    continue
                x = Candidate(method, mine["config_hash"], load(mine["b_prime_hash"]), mine["b_prime_hash"])
                y = Candidate(opponent, theirs["config_hash"], load(theirs["b_prime_hash"]), theirs["b_prime_hash"])
                rows += judge_pair(judge, triplet_id, load(t["a_hash"]), load(t["a_prime_hash"]),
                                   load(t["b_hash"]), x, y, seed, truth)
                counts["asked"] += 1
    except BaseException as exc:  # KeyboardInterrupt and Dagster's interrupt too: paid asks are never lost
        if partition is not None and counts["asked"]:
            try:
                store.write_table("judgements", partition, kept_rows(previous, rows) + rows)
            except Exception as failed:
                exc.add_note(f"the {counts['asked']} pairs judged before it were not saved: {failed}")
        raise
    kept = kept_rows(previous, rows)
    counts["kept"] = len({pair_id(r) for r in kept})
    return kept + rows, counts


def still_read_alike(row: dict, allow_tie: bool) -> bool:
    """A stored ask without error whose raw answer the current parser reads as its stored choice (an answer
    an older, looser parser counted as a vote is not reused)."""
    if row["error"]:
        return False
    try:
        picked = parse_answer(row["raw"], allow_tie)
    except ValueError:
        return False
    second = row["opponent"] if row["shown_first"] == row["method"] else row["method"]
    return row["choice"] == chosen(picked, row["shown_first"], second)


def kept_rows(previous: list[dict], rows: list[dict]) -> list[dict]:
    """The earlier rows of every pair `rows` do not judge (a pair judged now has its two rows in `rows`)."""
    judged = {pair_id(r) for r in rows}
    return [r for r in previous if pair_id(r) not in judged]


JUDGE_ASSETS = [judgements]
