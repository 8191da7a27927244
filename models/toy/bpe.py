"""Build the toy world's CLIP BPE vocabulary.

Real CLIP byte-level BPE (same algorithm, file formats and special tokens as
OpenAI's and OpenCLIP's tokenizer), but with merges only for the words of the
toy grammar, so the token table is ~600 rows instead of 49,408. Both
`open_clip.tokenizer.SimpleTokenizer(bpe_path=...)` and
`transformers.CLIPTokenizer(vocab.json, merges.txt)` load the result and give
identical ids.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from models.toy.world import ATTRIBUTES, INSTRUCTIONS

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
EXTRA_WORDS = ("a", "on", "background", "the", "it", "into", "to", "make", "turn", "change", "object")


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte → printable-unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    parts = tuple(word[:-1]) + (word[-1] + "</w>",)
    while len(parts) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        first, second = parts[i], parts[i + 1]
        merged, j = [], 0
        while j < len(parts):
            if j < len(parts) - 1 and parts[j] == first and parts[j + 1] == second:
                merged.append(first + second)
                j += 2
            else:
                merged.append(parts[j])
                j += 1
        parts = tuple(merged)
    return parts


def grammar_words() -> list[str]:
    words = set(EXTRA_WORDS)
    for values in ATTRIBUTES.values():
        words.update(values)
    for template in INSTRUCTIONS.values():
        words.update(w for w in template.split() if not w.startswith("{"))
    return sorted(words)


def build_merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges that make every word one token: add, for each word not yet whole,
    the pairs that join its current pieces left to right; repeat to a fixpoint."""
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for _ in range(20):
        changed = False
        for word in words:
            parts = _bpe(word, ranks)
            if len(parts) == 1:
                continue
            changed = True
            acc = parts[0]
            for nxt in parts[1:]:
                if (acc, nxt) not in ranks:
                    ranks[(acc, nxt)] = len(merges)
                    merges.append((acc, nxt))
                acc += nxt
        if not changed:
            return merges
    raise RuntimeError("BPE merges did not converge")


def vocabulary(merges: list[tuple[str, str]]) -> list[str]:
    """Token strings in id order, exactly as CLIP's SimpleTokenizer builds them."""
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += [SOT, EOT]
    return vocab


def write_tokenizer_files(out_dir: Path) -> dict[str, Path]:
    """Write bpe_simple_vocab.txt.gz (open_clip), vocab.json + merges.txt (transformers)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = build_merges(grammar_words())
    lines = "\n".join(["#version: 0.2 (toy analogy world)"] + [f"{a} {b}" for a, b in merges])
    paths = {
        "bpe": out_dir / "bpe_simple_vocab.txt.gz",
        "merges": out_dir / "merges.txt",
        "vocab": out_dir / "vocab.json",
    }
    # mtime=0 so the gzip bytes are reproducible
    with open(paths["bpe"], "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(lines.encode("utf-8"))
    paths["merges"].write_text(lines, encoding="utf-8")
    vocab = vocabulary(merges)
    paths["vocab"].write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    return paths


def vocab_size() -> int:
    return len(vocabulary(build_merges(grammar_words())))
