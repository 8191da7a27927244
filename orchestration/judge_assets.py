"""The pairwise judge as an asset: generations → judgements (→ the `win_rates` table of analogy.duckdb).

For every usable triplet, the run's main method (`difference_inversion` unless configured) is
judged against each other method of the run, twice with the order swapped
(evaluation.pairwise). Every ask is a row of `judgements`; the leaderboard refresh computes
`win_rates` from them.
"""


import json
from functools import lru_cache
from typing import Literal

import dagster as dg
from pydantic import Field

from evaluation.judge_backends import DEFAULT_CHAT_MODEL, DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_VLM
from evaluation.pairwise import WIN_RATE_COLUMNS, Candidate, ToyPairJudge, judge_pair, win_rates
from orchestration.assets import GROUP, WIN_RATE_TYPES, generations
from orchestration.metadata import asset_args, records_table, table_metadata
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
    method: str = Field(default="difference_inversion", description="the method judged against the others: a "
                        "label of the run, or a method name (its first spec in the run)")
    opponents: list[str] = Field(default=[], description="labels of the run to judge it against; empty: every "
                                                         "other method of the run")


def pair_judge(config: JudgementsConfig, models: ModelsResource):
    """The judge backend the config names, or None where the profile has none (the toy judge needs the
    toy world)."""
    if config.judge == "chat":
        from evaluation.judge_backends import ChatEndpointJudge

        return ChatEndpointJudge(config.model or DEFAULT_CHAT_MODEL, requests_per_minute=config.requests_per_minute)
    if config.judge == "vlm":
        from evaluation.judge_backends import LocalVLMJudge

        return LocalVLMJudge(config.model or DEFAULT_VLM, models.device)
    if models.get_profile().judge is None:
        return None
    return ToyPairJudge(models.judge())


@dg.asset(group_name=GROUP, deps=[generations], kinds={"parquet"},
          **asset_args("judgements", "evaluate", gpu=True))
def judgements(context: dg.AssetExecutionContext, config: JudgementsConfig, storage: AnalogyStorage,
               models: ModelsResource, methods: MethodsResource) -> dg.MaterializeResult:
    """The main method's B′ against each other method's, per triplet, asked twice with the order
    swapped (evaluation.pairwise): prompts, raw answers, choices, consistency and parse failures."""
    store = storage.store()
    key = context.partition_key
    runs = methods.runs(models.get_profile())
    labels = [r.label for r in runs]
    main = next((r.label for r in runs if r.label == config.method), None) or \
        next((r.label for r in runs if r.method.name == config.method), None)
    judge = pair_judge(config, models)
    rows, counts = [], {"asked": 0, "reused": 0}
    if judge is None or main is None:
        context.log.info(f"judgements: none made: {config.method!r} is not a method of this run "
                         f"({', '.join(labels)})" if judge else f"judgements: profile {models.profile!r} has no "
                         f"{config.judge!r} judge")
    else:
        unknown = sorted(set(config.opponents) - set(labels))
        if unknown:
            raise ValueError(f"opponents {unknown} are not methods of this run ({', '.join(labels)})")
        opponents = [label for label in (config.opponents or labels) if label != main]
        try:
            rows, counts = judge_partition(store, key, judge, main, opponents, methods.seed,
                                           previous=store.previous_rows("judgements", key))
        finally:
            getattr(judge, "close", lambda: None)()  # the chat judge's HTTP connections
    path = store.write_table("judgements", key, rows)
    dataset = key.split(".")[0]
    rates = win_rates([r | {"dataset": dataset} for r in rows])
    columns = list(WIN_RATE_COLUMNS[1:])
    table = records_table(columns, [tuple(r[c] for c in columns) for r in rates], WIN_RATE_TYPES)
    context.log.info(f"judgements: {counts['asked']} pairs asked, {counts['reused']} reused from earlier runs")
    return dg.MaterializeResult(metadata={**table_metadata(path, rows, "judgements"), "win_rates": table,
                                          "pairs asked": counts["asked"], "pairs reused": counts["reused"],
                                          "failed_asks": sum(1 for r in rows if r["error"])})


PAIR_KEY = ("triplet_id", "method", "config_hash", "opponent", "opponent_config_hash", "b_prime_hash",
            "opponent_b_prime_hash", "seed", "judge_id")


def judge_partition(store, key: str, judge, method: str, opponents: list[str], seed: int,
                    previous: list[dict] = ()) -> tuple[list[dict], dict[str, int]]:
    """(judgement rows, {asked, reused} pair counts) of `method` against each of `opponents` on every
    triplet both generated. A pair judged before (`previous`) with the same B′, seed and judge and no
    failed ask is reused, not re-asked."""
    earlier: dict[tuple, list[dict]] = {}
    for row in previous:
        earlier.setdefault(tuple(row[k] for k in PAIR_KEY), []).append(row)
    counts = {"asked": 0, "reused": 0}
    triplet_rows = {t["triplet_id"]: t for t in store.read_table("triplets", key) if not t["error"]}
    made = {(g["triplet_id"], g["method"]): g for g in store.read_table("generations", key)
            if not g["error"] and g["b_prime_hash"]}
    load = lru_cache(maxsize=256)(store.get_png)
    rows = []
    for triplet_id, t in triplet_rows.items():
        if (triplet_id, method) not in made:
            continue
        truth = json.loads(t["extra"] or "{}").get("attrs", {})
        mine = made[(triplet_id, method)]
        for opponent in opponents:
            theirs = made.get((triplet_id, opponent))
            if theirs is None:
                continue
            pair = (triplet_id, method, mine["config_hash"], opponent, theirs["config_hash"], mine["b_prime_hash"],
                    theirs["b_prime_hash"], seed, judge.judge_id)
            done = earlier.get(pair, [])
            if len(done) == 2 and not any(r["error"] for r in done):
                rows += done
                counts["reused"] += 1
                continue
            x = Candidate(method, mine["config_hash"], load(mine["b_prime_hash"]), mine["b_prime_hash"])
            y = Candidate(opponent, theirs["config_hash"], load(theirs["b_prime_hash"]), theirs["b_prime_hash"])
            rows += judge_pair(judge, triplet_id, load(t["a_hash"]), load(t["a_prime_hash"]), load(t["b_hash"]),
                               x, y, seed, truth)
            counts["asked"] += 1
    return rows, counts


JUDGE_ASSETS = [judgements]
