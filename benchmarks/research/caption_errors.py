"""Where do Difference Inversion's failures come from: the captions? Difference Inversion's text side
starts from the captions of A and A′; with `text_delta_source=added` its CLIP target is the words A′'s
caption adds to A's. This script captions every pair of some toy benchmark files with the profile's
captioner, marks each triplet by whether those added words are exactly the new value's word ("large",
"star", "black"), and splits the paired comparisons of `analogy bench --rows` files by that mark (and
says how often the pair shows a (colour, shape) scene held out from the method-side models). It also
reports a possible remedy, measured on the captions only: among the added words, the one whose encoding
lies furthest along the image delta, argmax over w of n(ET(w)) · (n(EI(A′)) − n(EI(A))).

    python -m benchmarks.research.caption_errors --benchmarks b1.parquet b2.parquet --rows r1.parquet r2.parquet \
        --against difference_inversion
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import torch.nn.functional as F
from PIL import Image

from benchmarks.common import benchmark_images
from models.context import ModelContext
from models.toy.world import HELD_OUT
from ops.cache import Cache
from ops.captions import caption
from ops.deltas import added_words
from orchestration.bench import paired_against


def caption_marks(benchmarks: list[Path], profile: str = "toy") -> dict[str, dict]:
    """{triplet_id: {exact, added, new, held_out, top_exact}} for every triplet of the benchmark files
    (top_exact: the added word furthest along the image delta is the new value's word)."""
    models, cache = ModelContext(profile), Cache()
    marks = {}
    for path in benchmarks:
        for row, im in zip(*benchmark_images(path)):
            a, a_prime = im["a"], im["a_prime"]
            added = added_words(caption(models, a, cache), caption(models, a_prime, cache))
            before, after = json.loads(row["a_attrs"]), json.loads(row["a_prime_attrs"])
            new = after[row["changed"]]
            held_out = any((s["colour"], s["shape"]) in HELD_OUT for s in (before, after))
            marks[row["triplet_id"]] = {"exact": added == new, "added": added, "new": new, "held_out": held_out,
                                        "top_exact": top_word(models.joint_clip, a, a_prime, added) == new}
    return marks


def top_word(clip, a: Image.Image, a_prime: Image.Image, added: str) -> str:
    """The word of `added` whose text encoding lies furthest along the pair's image delta."""
    words = added.split()
    if len(words) < 2:
        return added
    image = F.normalize(clip.encode_images([a, a_prime]), dim=-1)
    text = F.normalize(clip.encode_texts(words), dim=-1)
    return words[int((text @ (image[1] - image[0])).argmax())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", type=Path, nargs="+", required=True, help="`analogy toy benchmark` files")
    parser.add_argument("--rows", type=Path, nargs="+", required=True, help="`analogy bench --rows` files")
    parser.add_argument("--against", required=True, help="the method every other one is compared with")
    args = parser.parse_args()
    marks = caption_marks(args.benchmarks)
    exact = sum(m["exact"] for m in marks.values())
    held = [m for m in marks.values() if m["held_out"]]
    print(f"captions name the change exactly: {exact} / {len(marks)}; where the pair shows a held-out "
          f"(colour, shape) scene {sum(m['exact'] for m in held)} / {len(held)}, elsewhere "
          f"{exact - sum(m['exact'] for m in held)} / {len(marks) - len(held)}; the added word furthest along "
          f"the image delta names it in {sum(m['top_exact'] for m in marks.values())} / {len(marks)}")
    rows = [row for path in args.rows for row in pq.read_table(path).to_pylist() if row["triplet_id"] in marks]
    for group in (True, False):
        part = [row for row in rows if marks[row["triplet_id"]]["exact"] == group]
        if not part:
            continue
        scored = {}
        for row in part:
            if row["error"] is None:
                scored.setdefault(row["method"], []).append(row["joint"])
        print(f"\ncaptions {'exact' if group else 'wrong'}: {len({row['triplet_id'] for row in part})} triplets")
        print(f"| method | joint | {args.against} only | method only | sign test p |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| `{args.against}` | {sum(scored[args.against]) / len(scored[args.against]):.3f} | | | |")
        for method, c in paired_against(part, args.against).items():
            print(f"| `{method}` | {sum(scored[method]) / len(scored[method]):.3f} | {c['first_only']} "
                  f"| {c['second_only']} | {c['p_value']:.2g} |")


if __name__ == "__main__":
    main()
