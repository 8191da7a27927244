"""The per-partition report: an HTML gallery (A | A′ | B | B′ per method, with
scores), a summary table (mean ± 95% CI) and a scores plot (PNG)."""

from __future__ import annotations

import html
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from evaluation.stats import mean_ci95  # noqa: E402

ROLE_TITLES = {"a": "A", "a_prime": "A′", "b": "B", "b_prime_gt": "B′gt"}
INPUTS_BEFORE_OUTPUT = ("a", "a_prime", "b")  # table columns: A | A′ | B | B′ | B′gt


@dataclass
class GalleryRow:
    """One triplet: its input image hrefs and, per method, B′'s href, scores and error."""

    triplet_id: str
    instruction: str | None
    inputs: dict[str, str | None]  # role → href (None when missing)
    outputs: dict[str, str | None] = field(default_factory=dict)  # method → B′ href
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # method → metric → value
    errors: dict[str, str] = field(default_factory=dict)  # method → error ("" key: the triplet's own)


def build_gallery(triplets: list[dict], generations: list[dict], metrics: list[dict],
                  href: Callable[[str | None], str | None]) -> list[GalleryRow]:
    """Join the partition's tables into gallery rows; `href` turns an image hash into a link."""
    rows = {}
    for t in triplets:
        rows[t["triplet_id"]] = GalleryRow(t["triplet_id"], t["instruction"],
                                           {r: href(t[f"{r}_hash"]) for r in ROLE_TITLES},
                                           errors={"": t["error"]} if t["error"] else {})
    for g in generations:
        row = rows[g["triplet_id"]]
        row.outputs[g["method"]] = href(g["b_prime_hash"])
        if g["error"]:
            row.errors[g["method"]] = g["error"]
    for m in metrics:
        rows[m["triplet_id"]].scores.setdefault(m["method"], {})[m["metric"]] = m["value"]
    return list(rows.values())


def summarise(metric_rows: list[dict]) -> dict[tuple[str, str], tuple[int, float, float | None]]:
    """(method, metric) → (n, mean, CI half-width)."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in metric_rows:
        if row["value"] is not None:
            values[(row["method"], row["metric"])].append(row["value"])
    return {key: (len(v), *mean_ci95(v)) for key, v in sorted(values.items())}


def summary_markdown(summary: dict[tuple[str, str], tuple[int, float, float | None]]) -> str:
    lines = ["| method | metric | n | mean ± 95% CI |", "| --- | --- | ---: | ---: |"]
    for (method, metric), (n, mean, ci) in summary.items():
        lines.append(f"| {method} | {metric} | {n} | {mean:.4f}" + (f" ± {ci:.4f} |" if ci is not None else " |"))
    return "\n".join(lines)


def scores_plot(summary: dict[tuple[str, str], tuple[int, float, float | None]]) -> bytes:
    """One panel per metric, one bar per method with its 95% CI; PNG bytes."""
    metrics = sorted({metric for _, metric in summary})
    methods = sorted({method for method, _ in summary})
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(3.2 * max(1, len(metrics)), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        present = [m for m in methods if (m, metric) in summary]
        means = [summary[(m, metric)][1] for m in present]
        cis = [summary[(m, metric)][2] or 0.0 for m in present]
        ax.bar(range(len(present)), means, yerr=cis, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(present)), present, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.6)
    if not metrics:
        axes[0][0].text(0.5, 0.5, "no scores", ha="center", va="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: center; vertical-align: middle; font-size: 13px; }
img.plot { max-width: 100%; }
img.thumb { width: 128px; height: 128px; object-fit: contain; image-rendering: pixelated; background: #eee; }
.error { color: #b00020; }
.scores { text-align: left; font-family: monospace; font-size: 12px; }
"""


def _img(href: str | None) -> str:
    return f'<img class="thumb" src="{html.escape(href)}">' if href else '—'


def gallery_html(title: str, rows: list[GalleryRow], summary_md: str, plot_href: str | None) -> str:
    """A self-contained page except for image files, referenced by relative href."""
    out = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>",
           f"<h1>{html.escape(title)}</h1>", "<h2>Summary</h2>", _markdown_table_to_html(summary_md)]
    if plot_href:
        out.append(f'<p><img class="plot" src="{html.escape(plot_href)}" alt="scores"></p>')
    out.append("<h2>Triplets</h2>")
    for row in rows:
        out.append(f"<h3>{html.escape(row.triplet_id)}</h3>")
        if row.instruction:
            out.append(f"<p>{html.escape(row.instruction)}</p>")
        if "" in row.errors:
            out.append(f'<p class="error">unusable triplet: {html.escape(row.errors[""])}</p>')
            continue
        out.append("<table><tr><th>method</th>" + "".join(f"<th>{ROLE_TITLES[r]}</th>" for r in INPUTS_BEFORE_OUTPUT)
                   + "<th>B′</th><th>B′gt</th><th>scores</th></tr>")
        for method in sorted(set(row.outputs) | set(row.errors) - {""}):
            scores = "<br>".join(f"{html.escape(k)} {v:.4f}" for k, v in sorted(row.scores.get(method, {}).items()))
            if method in row.errors:
                scores = f'<span class="error">{html.escape(row.errors[method])}</span>'
            out.append(f"<tr><td>{html.escape(method)}</td>"
                       + "".join(f"<td>{_img(row.inputs.get(r))}</td>" for r in INPUTS_BEFORE_OUTPUT)
                       + f"<td>{_img(row.outputs.get(method))}</td><td>{_img(row.inputs.get('b_prime_gt'))}</td>"
                       + f"<td class='scores'>{scores}</td></tr>")
        out.append("</table>")
    return "\n".join(out)


def _markdown_table_to_html(md: str) -> str:
    lines = [ln.strip().strip("|").split("|") for ln in md.splitlines() if ln.strip()]
    if len(lines) < 2:
        return ""
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in lines[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in ln) + "</tr>" for ln in lines[2:])
    return f"<table><tr>{head}</tr>{body}</table>"
