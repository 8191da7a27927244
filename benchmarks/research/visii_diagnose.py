"""What does VISII learn on the toy editor? For the first N triplets of a toy benchmark file, train
the instruction of each (A, A′) as `visii` does, then apply, with VISII's own sampler (Euler ancestral,
20 steps, s_T 8, s_I 1.5), each of these conditionings, to B (judged against B′gt) and to A (does it
turn A into A′, the pair it was trained on?):

    written      the triplet's true instruction, untrained (the oracle: what the editor can do)
    init         the PEZ prompt of A′ that VISII starts from, untrained
    best / last  VISII's learned rows (the official checkpoint / the last step)
    from-written VISII's training started from the written instruction instead of PEZ (a diagnostic:
                 does the training objective keep a good instruction good?)

    python -m benchmarks.research.visii_diagnose /tmp/b600741.parquet --n 16 [--settings '{"steps": 1000}']
"""

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import benchmark_images, set_threads
from evaluation.scoring.judge_scores import judge_triplet
from models.context import ModelContext
from models.loaders import load_judge
from ops import visii as v
from ops.cache import Cache, content_seed
from ops.registry import get_method
from ops.text import encode_prompt


def fixed(pipe, text: str, config) -> v.LearnedInstruction:
    """An untrained conditioning: the text's states as both best and last."""
    states = encode_prompt(pipe, text).float()
    return v.LearnedInstruction(states, states, encode_prompt(pipe, config.negative_prompt).float(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", type=Path)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--settings", default="{}", help="VISII settings as JSON (over the toy profile's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the per-triplet verdicts here as JSON")
    args = parser.parse_args()
    set_threads()
    models, cache = ModelContext(), Cache()
    config = get_method("visii").config(json.loads(args.settings), models.profile)
    pipe, judge = models.editor, load_judge(models.profile)
    rows, images = benchmark_images(args.benchmark, args.n)
    pairs = [(im["a"], im["a_prime"]) for im in images]

    start = time.perf_counter()
    learned = v.learned_instructions(models, pairs, config, args.seed, cache, batch_size=8)
    print(f"VISII training: {time.perf_counter() - start:.0f} s for {len(pairs)} pairs", flush=True)
    written = [r["instruction"] for r in rows]
    start = time.perf_counter()
    from_written = v.train_instructions(pipe, models.editor_clip, [
        (a, a_prime, text, content_seed(args.seed, a, a_prime)) for (a, a_prime), text in zip(pairs, written)], config)
    print(f"training from the written instruction: {time.perf_counter() - start:.0f} s", flush=True)

    variants = {
        "written": [fixed(pipe, t, config) for t in written],
        "init": [fixed(pipe, li.init_text, config) for li in learned],
        "best": learned, "last": [li for li in learned],
        "from-written best": from_written, "from-written last": from_written,
    }
    verdicts = defaultdict(list)
    for name, conds in variants.items():
        keep = "last" if name.endswith("last") else "best"
        cfg = v.VISIIConfig(**{**config.__dict__, "keep": keep})
        outs_b = [v.apply_instruction(pipe, im["b"], li, cfg, args.seed) for im, li in zip(images, conds)]
        outs_a = [v.apply_instruction(pipe, im["a"], li, cfg, args.seed) for im, li in zip(images, conds)]
        for row, read_b, read_a in zip(rows, judge.read(outs_b), judge.read(outs_a)):
            b_attrs, gt = json.loads(row["b_attrs"]), json.loads(row["b_prime_gt_attrs"])
            a_prime_attrs = json.loads(row["a_prime_attrs"]) if "a_prime_attrs" in row else None
            on_b = judge_triplet(read_b, b_attrs, gt, row["changed"])
            on_a = (float(all(read_a[k] == val for k, val in a_prime_attrs.items()))
                    if a_prime_attrs else float("nan"))
            # does B′ copy A′'s other attributes (repainting B into A′)?
            copies = (sum(read_b[k] == a_prime_attrs[k] != b_attrs[k] for k in b_attrs if k != row["changed"])
                      if a_prime_attrs else float("nan"))
            verdicts[name].append({"triplet_id": row["triplet_id"], "changed": row["changed"], **on_b,
                                   "a_to_a_prime": on_a, "copied_from_a_prime": copies})
        got = verdicts[name]
        mean = {k: sum(x[k] for x in got) / len(got) for k in ("joint", "target", "keep", "a_to_a_prime",
                                                                 "copied_from_a_prime")}
        print(f"{name:18s} " + "  ".join(f"{k} {val:.3f}" for k, val in mean.items()), flush=True)

    for name, li_list in (("VISII", learned), ("from-written", from_written)):
        for row, li in zip(rows, li_list):
            if isinstance(li, Exception):
                print(name, row["triplet_id"], "error", li)
                continue
            print(f"{name:12s} {row['triplet_id']} {row['changed']:10s} init {li.init_text!r:40s} "
                  f"written {row['instruction']!r:32s} best_step {li.best_step:4d} mse first100 "
                  f"{sum(li.mse[:100]) / 100:.4f} last100 {sum(li.mse[-100:]) / 100:.4f} "
                  f"clip {li.clip[0]:.3f}→{li.clip[-1]:.3f}")
    if args.out:
        args.out.write_text(json.dumps(verdicts, indent=1))


if __name__ == "__main__":
    main()
