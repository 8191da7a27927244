"""One explicit pyarrow schema per table.

Tables live at `$ANALOGY_HOME/tables/<table>/dataset=<partition>/part-0.parquet`;
the `dataset` column comes from that directory name (hive partitioning), so it
is not stored in the files. Images are not stored in tables: a `*_hash` column
holds an image's hash (SHA-256 of its pixels, mode and size: `ops.cache.image_hash`), the
name of its PNG under `blobs/png/<hash>.png`.

Every table has an `error` column: a row whose `error` is set stands for a
triplet (or generation) that could not be used, with the reason, so one bad
input never fails a whole partition.
"""

from __future__ import annotations

import pyarrow as pa

TRIPLETS = pa.schema(
    [
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # dataset kind: toy, manifest, instructpix2pix, …
        pa.field("instruction", pa.string()),  # the edit in words, where the dataset has one
        pa.field("a_hash", pa.string()),
        pa.field("a_prime_hash", pa.string()),
        pa.field("b_hash", pa.string()),
        pa.field("b_prime_gt_hash", pa.string()),  # ground truth B′, where the dataset has one
        pa.field("a_caption", pa.string()),  # captions shipped with the dataset (not generated ones)
        pa.field("a_prime_caption", pa.string()),
        pa.field("b_caption", pa.string()),
        pa.field("b_prime_caption", pa.string()),
        pa.field("extra", pa.string()),  # JSON: dataset-specific fields (toy attributes, hub row ids, …)
        # the kind of edit, for per-category results: the toy world's changed attribute, a manifest's
        # `category`, a hub dataset's edit type by evaluation.ingestion.sources.category_of; null where unknown
        pa.field("category", pa.string()),
        pa.field("notes", pa.string()),  # JSON list: repairs applied to the inputs
        pa.field("error", pa.string()),  # set ⇒ the triplet is unusable, with the reason
    ]
)

GENERATIONS = pa.schema(
    [
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("config", pa.string(), nullable=False),  # JSON of the method's resolved config
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("profile", pa.string(), nullable=False),  # the model profile that generated B′
        # the versions of the models that made B′ (models.loaders.weights_key): content digests of local
        # folders, the hub snapshot of real models; a B′ is reused only under the same
        pa.field("models", pa.string(), nullable=False),
        pa.field("inputs_key", pa.string(), nullable=False),  # digest of A, A′, B and instruction (reuse key)
        pa.field("b_prime_hash", pa.string()),
        pa.field("seconds", pa.float64()),  # wall time of this B′ alone (per-pair training: `diff_tokens`, …)
        pa.field("peak_memory_mb", pa.float64()),  # CUDA: max allocated; CPU: the process's peak RSS meanwhile
        # B′ was made with the triplet's instruction (the edit in words, ground truth): ranked apart
        pa.field("privileged", pa.bool_()),
        pa.field("run_id", pa.string()),  # the Dagster run that generated B′ (a reused B′ keeps its run)
        pa.field("error", pa.string()),
    ]
)

# Long format so new metrics (judge scores, VLM votes, …) add rows, not columns.
METRICS = pa.schema(
    [
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("model_id", pa.string()),  # the encoder or judge that produced the value
    ]
)

# Difference Inversion intermediates (orchestration/di_assets.py): per distinct image or (A, A′) pair.
CAPTIONS = pa.schema([("image_hash", pa.string()), ("captioner", pa.string()), ("caption", pa.string()),
                      ("error", pa.string())])
PEZ_PROMPTS = pa.schema([("image_hash", pa.string()), ("variant", pa.string()), ("clip", pa.string()),
                         ("prompt_source", pa.string()), ("token_ids", pa.list_(pa.int32())), ("text", pa.string()),
                         ("cosine", pa.float64()), ("error", pa.string())])
CLIP_DELTAS = pa.schema([("a_hash", pa.string()), ("a_prime_hash", pa.string()), ("alpha", pa.float64()),
                         ("text_delta_source", pa.string()),  # DIConfig.text_delta_source: captions | added
                         ("deltas_key", pa.string()),  # blobs/cache/clip_deltas/<key>: image, text, interpolated
                         ("cos_image_text", pa.float64()), ("error", pa.string())])
DIFF_TOKENS = pa.schema([("a_hash", pa.string()), ("a_prime_hash", pa.string()), ("variant", pa.string()),
                         ("config", pa.string()), ("tokens_key", pa.string()),  # blobs/cache/diff_tokens/<key>: D̃
                         ("final_tc", pa.float64()), ("final_clip", pa.float64()), ("curve", pa.string()),
                         ("seconds", pa.float64()), ("peak_memory_mb", pa.float64()), ("error", pa.string())])
DI_TABLES = {"captions": CAPTIONS, "pez_prompts": PEZ_PROMPTS, "clip_deltas": CLIP_DELTAS, "diff_tokens": DIFF_TOKENS}
# VISII's learned instructions (orchestration/visii_assets.py): per distinct (A, A′) pair × VISII method.
VISII_INSTRUCTIONS = pa.schema([("a_hash", pa.string()), ("a_prime_hash", pa.string()), ("variant", pa.string()),
                                ("config", pa.string()),
                                ("instruction_key", pa.string()),  # blobs/cache/visii_instruction/<key>
                                ("init_text", pa.string()),  # the PEZ prompt of A′ it started from
                                ("best_step", pa.int64()), ("best_mse", pa.float64()),  # the kept "best" rows
                                ("final_clip", pa.float64()), ("curve", pa.string()),  # {"mse": [...], "clip": [...]}
                                ("seconds", pa.float64()), ("peak_memory_mb", pa.float64()),
                                ("error", pa.string())])

# The pairwise judge (evaluation.scoring.pairwise): two rows per triplet × method pair × judge, one per order.
JUDGEMENTS = pa.schema(
    [
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("opponent", pa.string(), nullable=False),
        pa.field("opponent_config_hash", pa.string(), nullable=False),
        pa.field("b_prime_hash", pa.string()),  # the two B′ judged (a re-run reuses a pair whose B′ are unchanged)
        pa.field("opponent_b_prime_hash", pa.string()),
        pa.field("seed", pa.int64(), nullable=False),  # the seed the first order was drawn from
        pa.field("judge_id", pa.string(), nullable=False),
        pa.field("ask", pa.int64(), nullable=False),  # 1 = the order drawn from the seed, 2 = swapped
        pa.field("shown_first", pa.string(), nullable=False),  # the method shown as candidate 1
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("raw", pa.string()),  # the judge's answer, as it came
        pa.field("choice", pa.string()),  # the method it chose, or "tie"; null where the ask failed
        pa.field("consistent", pa.bool_()),  # both asks chose the same; null where one failed
        pa.field("error", pa.string()),  # a parse failure or the judge's error
    ]
)

# The 4-choice human study (evaluation.scoring.survey): one row per participant × question, partitioned by
# the survey's dataset partition.
SURVEY_ANSWERS = pa.schema(
    [
        pa.field("survey_id", pa.string(), nullable=False),
        pa.field("participant", pa.string(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("choice", pa.int64(), nullable=False),  # the candidate picked, 1–4 as shown
        pa.field("method", pa.string(), nullable=False),  # the method behind it (from the answer key)
        pa.field("candidates", pa.string(), nullable=False),  # JSON: the methods in the order shown
        pa.field("file", pa.string(), nullable=False),  # the answer file it came from
    ]
)

TABLES: dict[str, pa.Schema] = {"triplets": TRIPLETS, "generations": GENERATIONS, "metrics": METRICS,
                                "judgements": JUDGEMENTS, "survey_answers": SURVEY_ANSWERS, **DI_TABLES,
                                "visii_instructions": VISII_INSTRUCTIONS}
