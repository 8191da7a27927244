"""Do the toy models read a prompt's words wherever they stand? Text-to-image (25 DDIM steps,
CFG 7.5, 8 seeds) from a base caption with words appended, and from reordered or partial
captions; the judge's two most common reads per attribute.

    python -m benchmarks.research.prompt_composition

Difference Inversion appends D̃ after B's prompt: if appended tokens are ignored, D̃ can act
only by brute force (docs/results.md#di-text-side).
"""

import argparse
from collections import Counter

import torch

from benchmarks.common import token_ids
from benchmarks.research.di_diagnose import sample
from models.context import ModelContext
from models.loaders import load_judge

BASE = "a small blue square on a white background"
APPENDED = ["", "red", "red red red", "star", "star star star", "large", "on a black background"]
PROMPTS = ["a blue, square, small, on a white background", "on a white background, square, blue, small",
           "a large, on a grey background, orange, triangle", "a square"]


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    ctx = ModelContext()
    pipe, judge = ctx.pipeline, load_judge(ctx.profile)

    def ids(text: str) -> torch.Tensor:
        return token_ids(pipe, text)

    cases = [(f"{BASE!r} + {extra!r}", [ids(BASE)] + ([ids(extra)] if extra else [])) for extra in APPENDED]
    cases += [(repr(p), [ids(p)]) for p in PROMPTS]
    for name, parts in cases:
        reads = judge.read(sample(pipe, parts, n=8))
        print(name, {a: Counter(r[a] for r in reads).most_common(2) for a in ("size", "colour", "shape", "background")})


if __name__ == "__main__":
    main()
