"""What Analogist's self-attention cloning (SAC) does to the attention maps of the toy inpainter, and to B′.

For the first N triplets of a toy benchmark file, Analogist runs twice at the toy defaults, with SAC and
without (cross-attention masking on in both). In both runs the self-attention of the SAC blocks is
captured at every step (the same processor, its edit on or off), and this prints, per block, averaged
over the steps, heads, both CFG halves and the triplets:

- `B'→A'`: the attention mass a B′ query puts on A′'s keys (what SAC raises), with and without SAC;
  `B→A`: the mass a B query puts on A's keys (the template SAC copies); `B'→B'`: on its own cell;
- `neg`: the share of the template logits sim[B→A] below 0, which s = 1.3 lowers instead of raising;
- `corr`: how far B′ attends to A′ the way B attends to A: the correlation, key by key, of the
  probabilities B′→A′ and B→A (each B′ position against the same position of B), with and without SAC;
- then for B′: the mean |Δ| of its pixels (0–255) between the two runs, how many of its attributes the
  judge reads differently, how many of those SAC moved to A′'s value and how many to the truth, and the
  joint score of each run.

    python -m benchmarks.research.analogist_attention b600741.parquet --n 16 [--scale S] [--json OUT]
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import benchmark_images, set_threads
from models.context import ModelContext
from models.loaders import load_judge
from models.profiles import get_profile
from ops import analogist as an
from ops.cache import Cache
from ops.registry import resolve_specs


def block_stats(sim: torch.Tensor, probs: torch.Tensor) -> dict[str, float]:
    """The statistics of one captured self-attention call (batch·heads, queries, keys)."""
    q = an.quadrants(sim.shape[1])
    mass = lambda rows, cols: probs[:, q[rows]][:, :, q[cols]].sum(-1).mean().item()  # noqa: E731
    template = sim[:, q["B"]][:, :, q["A"]]
    b_a, bp_ap = probs[:, q["B"]][:, :, q["A"]], probs[:, q["B'"]][:, :, q["A'"]]
    x, y = b_a - b_a.mean(-1, keepdim=True), bp_ap - bp_ap.mean(-1, keepdim=True)
    corr = ((x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1)).clamp_min(1e-12)).mean().item()
    return {"B'→A'": mass("B'", "A'"), "B→A": mass("B", "A"), "B'→B'": mass("B'", "B'"),
            "neg": (template < 0).float().mean().item(), "corr": corr}


def run(pipe, grid, prompt, config, sac: bool, seed: int):
    """B′'s grid, and the per-block statistics averaged over the steps."""
    processors = dict(pipe.unet.attn_processors)
    captured = {}
    for index, block in enumerate(an.transformer_blocks(pipe.unet)):
        if config.sac_start_layer <= index < config.sac_end_layer:
            captured[index] = processors[f"{block}.attn1.processor"] = an.AnalogistAttnProcessor(
                sac, False, config.scale_sac, capture=True)
        if config.cam and config.cam_start_layer <= index < config.cam_end_layer:
            processors[f"{block}.attn2.processor"] = an.AnalogistAttnProcessor(False, True, config.scale_sac)
    stats = defaultdict(list)

    def on_step(pipeline, step, timestep, kwargs):
        for index, processor in captured.items():
            stats[index].append(block_stats(processor.last["sim"], processor.last["probs"]))
        return kwargs

    with an.processors_installed(pipe.unet, processors):
        out = an.sample_grid(pipe, grid, prompt, config, seed, callback_on_step_end=on_step)
    means = {index: {k: float(np.mean([s[k] for s in steps])) for k in steps[0]} for index, steps in stats.items()}
    return out, means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", type=Path)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--scale", type=float, help="SAC's s instead of the toy default's (1.3, the official)")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    set_threads()
    models, cache = ModelContext(), Cache()
    (spec,) = resolve_specs([f"analogist[scale_sac={args.scale}]" if args.scale else "analogist"], get_profile("toy"))
    config, pipe, judge = spec.config, models.inpainter, load_judge(models.profile)
    per_block = {True: defaultdict(list), False: defaultdict(list)}
    delta, moved, right = [], [], {True: 0, False: 0}
    toward_a_prime, toward_truth = [], []
    rows, images = benchmark_images(args.benchmark, args.n)
    for i, (row, im) in enumerate(zip(rows, images)):
        a, a_prime, b = im["a"], im["a_prime"], im["b"]
        grid = an.paste_b(an.make_grid(a, a_prime, b, an.native_size(pipe) // 2, config.padding))
        prompt = an.prompt_for(models, a, a_prime, b, cache, config)
        outs = {}
        for sac in (True, False):
            out, means = run(pipe, grid, prompt, config, sac, seed=i)
            for index, values in means.items():
                per_block[sac][index].append(values)
            outs[sac] = out.crop(an.b_prime_box(grid.width, config.padding, config.crop)).resize(b.size)
        want = json.loads(row["b_prime_gt_attrs"])
        reads = {sac: judge.read([outs[sac]])[0] for sac in outs}
        a_prime_read = judge.read([a_prime])[0]
        for sac in outs:
            right[sac] += all(reads[sac][k] == v for k, v in want.items())
        moved.append(sum(reads[True][k] != reads[False][k] for k in want))
        toward_a_prime.append(sum(reads[True][k] != reads[False][k] and reads[True][k] == a_prime_read[k]
                                  for k in want))
        toward_truth.append(sum(reads[True][k] != reads[False][k] and reads[True][k] == want[k] for k in want))
        delta.append(np.abs(np.asarray(outs[True], float) - np.asarray(outs[False], float)).mean())
        print(f"{i + 1}/{len(rows)}", file=sys.stderr, flush=True)
    table = {}
    print("block | B'→A' SAC | B'→A' off | B→A off | B'→B' off | neg (sim[B→A] < 0) | corr SAC | corr off")
    for index in sorted(per_block[True]):
        on = {k: float(np.mean([v[k] for v in per_block[True][index]])) for k in per_block[True][index][0]}
        off = {k: float(np.mean([v[k] for v in per_block[False][index]])) for k in per_block[False][index][0]}
        table[index] = {"sac": on, "off": off}
        cells = [on["B'→A'"], off["B'→A'"], off["B→A"], off["B'→B'"], off["neg"], on["corr"], off["corr"]]
        print(" | ".join([str(index)] + [f"{c:.4f}" for c in cells]))
    summary = {"n": len(rows), "mean_abs_delta_b_prime": float(np.mean(delta)),
               "attributes_read_differently": int(sum(moved)),
               "triplets_read_differently": int(sum(m > 0 for m in moved)),
               "moved_to_a_prime_value": int(sum(toward_a_prime)), "moved_to_the_truth": int(sum(toward_truth)),
               "joint_sac": right[True] / len(rows), "joint_off": right[False] / len(rows), "blocks": table}
    print(json.dumps({k: v for k, v in summary.items() if k != "blocks"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
