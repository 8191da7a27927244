"""A candidate toy UNet (`python -m models.toy.train --only unet|corrected --unet-out FOLDER`) against the
shipped one: `analogy toy check`'s composition section and, with `--t2i`, its text-to-image section, on
a toy profile whose diffusion pipeline is FOLDER ("shipped" for the committed one). `--states` adds how
far apart the text encoder puts the values of an attribute at an appended word and at the word's own
place in a canonical caption (mean pairwise distance of the states): whether the appended value
reaches the UNet at all (models/toy/MODEL_CARD.md, "Corrected captions").

    python -m benchmarks.research.toy_unet_candidate /tmp/unet_fs --t2i --states
"""

import argparse
import json
import time
from dataclasses import replace

import torch

from evaluation.scoring.toy_check import composition_scores, t2i_scores
from models.loaders import load_pipeline
from models.profiles import get_profile
from models.toy.world import ATTRIBUTES, Scene, caption, phrase

BASE = Scene("small", "blue", "square", "white")


@torch.no_grad()
def state_spread(pipe) -> dict:
    """Per one-word attribute: the spread of its values' states at their place in a canonical caption
    and appended after BASE's caption (", value")."""
    tok, encoder = pipe.tokenizer, pipe.text_encoder

    def state(text: str, word: str, last: bool) -> torch.Tensor:
        ids = tok(text).input_ids
        h = encoder(input_ids=torch.tensor([ids])).last_hidden_state[0]
        return h[len(ids) - 2] if last else h[ids.index(tok(word, add_special_tokens=False).input_ids[0])]

    out = {}
    for name in ("size", "colour", "shape"):
        values = ATTRIBUTES[name]
        own = torch.stack([state(caption(BASE.replace(**{name: v})), v, last=False) for v in values])
        appended = torch.stack([state(f"{caption(BASE)}, {phrase(BASE.replace(**{name: v}), name)}", v, last=True)
                                for v in values])
        out[name] = {"own_place": round(torch.pdist(own).mean().item(), 2),
                     "appended": round(torch.pdist(appended).mean().item(), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help='a toy diffusion pipeline folder, or "shipped"')
    parser.add_argument("--t2i", action="store_true", help="also text-to-image from every caption (3 min)")
    parser.add_argument("--states", action="store_true", help="also the text encoder's state spread")
    args = parser.parse_args()
    profile = get_profile("toy")
    if args.folder != "shipped":
        profile = replace(profile, diffusion=args.folder)
    start = time.perf_counter()
    out = {"composition": composition_scores(profile)}
    if args.t2i:
        out["t2i"] = t2i_scores(profile)
    if args.states:
        out["states"] = state_spread(load_pipeline(profile))
    print(json.dumps(out), f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
