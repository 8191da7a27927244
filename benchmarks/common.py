"""What the benchmark scripts share: thread setup, the images of a toy benchmark file, a VAE folder
in the toy latent space (with the RMSE its readings use) and a text's token ids.

Run every script from the repository root as a module: `python -m benchmarks.NAME` (the product's
benchmarks) or `python -m benchmarks.research.NAME` (the research scripts); what they measured is in
docs/results.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def set_threads() -> int:
    """Torch's intra-op threads: OMP_NUM_THREADS where it is set, else 1 (docs/results.md's CPU numbers
    were measured at one thread per process, two processes side by side on 2 cores)."""
    threads = int(os.environ.get("OMP_NUM_THREADS") or 1)
    torch.set_num_threads(threads)
    return threads


def benchmark_images(path: Path, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """The first `limit` rows (all: None) of an `analogy toy benchmark` file, and each row's images
    {"a", "a_prime", "b"} decoded to RGB."""
    from evaluation.ingestion.images import decode_image
    from orchestration.bench import read_benchmark

    rows = read_benchmark(path, limit)
    return rows, [{k: decode_image(row[f"{k}_png"]).image for k in ("a", "a_prime", "b")} for row in rows]


def load_vae(folder: Path):
    """A diffusers VAE folder of any class (its config.json names it), float32, eval mode."""
    import diffusers

    cls = getattr(diffusers, json.loads((Path(folder) / "config.json").read_text())["_class_name"])
    return cls.from_pretrained(folder, dtype=torch.float32).eval()


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().sqrt().item()


def token_ids(pipe, text: str) -> torch.Tensor:
    """`text`'s token ids in the diffusion pipeline's tokenizer, without SOT and EOT."""
    return torch.tensor(pipe.tokenizer(text, add_special_tokens=False).input_ids)
