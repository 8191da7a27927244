"""The per-partition report: one self-contained HTML page (no network: style, script and plot
inline; images by relative path), rendered from templates/report.html.j2, and the B′ sample grid the
`generations` and `report` assets show.

The page shows the partition's verdict (evaluation.presentation.views.partition_verdict), in this order:
- #ranking: the pairwise judge's Bradley–Terry ranking of the methods that see only the example pair
  (strength with its 95 % bootstrap interval, rank range, mean win rate, votes), one table per judge; and
  #ranking-all, every method ranked, those given the triplet's instruction (ground truth) marked ★;
- #summary: the method × metric table (category all), sortable by clicking a header, each cell the
  mean with its 95 % interval (or "n/a (n < 5)") and n, ↑/↓ saying which way is better, the best
  example-only method per column shaded, privileged methods listed after the others;
- #cost: seconds per task (one-off per-pair training amortised over the triplets that used it) and peak
  memory per method;
- #categories: per kind of edit, each method's mean win rate and its mean headline score;
- #win-rates, #judge-quality, #judge-agreement: the judge's pairwise win rates, its position bias and
  inconsistency, and its agreement with the human study where there is one;
- the plot of the same means and intervals, one panel per metric family, on that family's scale;
- #triplets: one row per triplet: A, A′, B and B′gt once, then each method's B′ side by side, each
  linked to its config and to the Dagster run that made it; #configs: each config, by method and hash.
A table of the verdict with no rows is a one-line note, never an error.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jinja2 import Environment, FileSystemLoader, StrictUndefined  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from evaluation.scoring.cost import COST_METRICS  # noqa: E402
from evaluation.scoring.pairwise import ALL, pair_outcomes  # noqa: E402
from evaluation.scoring.stats import MIN_BOOTSTRAP_N  # noqa: E402

ROLE_TITLES = {"a": "A", "a_prime": "A′", "b": "B", "b_prime_gt": "B′gt"}
LOWER_IS_BETTER = frozenset({"gt_pixel_mse", "seconds_per_task", "peak_memory_mb"})
HEADLINE_METRICS = frozenset({"judge_joint", "judge_target", "judge_keep", "clip_direction", "dinov2_direction",
                              "gt_psnr", "seconds_per_task", "peak_memory_mb"})
"""The metrics the report asset's UI metadata summarises (the page shows them all)."""


def metric_family(metric: str) -> tuple[str, tuple[float, float] | None]:
    """(the plot panel a metric goes in, that panel's fixed axis range or None for automatic)."""
    if metric.startswith("judge_"):
        return "judge (share of triplets right)", (0.0, 1.0)
    if metric.endswith("_direction"):
        return "directional (cosine of edit directions)", (-1.0, 1.0)
    if metric.endswith("_gt_cosine"):
        return "feature cosine to B′gt", (-1.0, 1.0)
    return metric, None  # pixel scores: each on its own scale


def better(metric: str) -> str:
    return "↓" if metric in LOWER_IS_BETTER else "↑"


@dataclass
class GalleryRow:
    """One triplet: its input image hrefs and, per method, B′'s href, generation record and scores."""

    triplet_id: str
    instruction: str | None
    inputs: dict[str, str | None]  # role → href (None when missing)
    outputs: dict[str, dict] = field(default_factory=dict)  # method → {href, config_hash, run_id, error}
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # method → metric → value
    error: str | None = None  # the triplet's own (unusable inputs)


def build_gallery(triplets: list[dict], generations: list[dict], metrics: list[dict],
                  href: Callable[[str | None], str | None]) -> list[GalleryRow]:
    """Join the partition's tables into gallery rows; `href` turns an image hash into a link."""
    rows = {t["triplet_id"]: GalleryRow(t["triplet_id"], t["instruction"],
                                        {r: href(t[f"{r}_hash"]) for r in ROLE_TITLES}, error=t["error"])
            for t in triplets}
    for g in generations:
        if g["triplet_id"] in rows:
            rows[g["triplet_id"]].outputs[g["method"]] = {"href": href(g["b_prime_hash"]), "error": g["error"],
                                                          "config_hash": g["config_hash"], "run_id": g.get("run_id")}
    for m in metrics:
        if m["triplet_id"] in rows:
            rows[m["triplet_id"]].scores.setdefault(m["method"], {})[m["metric"]] = m["value"]
    return list(rows.values())


_PLOT_COLUMNS = 3  # panels a row: 3 × 3.6 in at dpi 100 fits the UI's 1,280-px dialog
_PANEL_WIDTH_IN = 3.6
_PLOT_DPI = 100


def scores_plot(estimates: list[dict]) -> bytes:
    """One panel per metric family, at most 3 panels a row (≤ 1,100 px wide at dpi 100, to fit the Dagster UI's
    dialog and the report): a point per method × metric with exactly its 95 % interval (a point alone where the
    estimate has none); methods in full on the y axis, shared along each row; PNG bytes."""
    families: dict[str, list[dict]] = {}
    for e in estimates:
        families.setdefault(metric_family(e["metric"])[0], []).append(e)
    methods = sorted({e["method"] for e in estimates})
    columns = min(_PLOT_COLUMNS, max(1, len(families)))
    rows = max(1, -(-len(families) // columns))
    height = 0.32 * max(3, len(methods)) + 1.3
    fig, axes = plt.subplots(rows, columns, figsize=(_PANEL_WIDTH_IN * columns, height * rows), squeeze=False,
                             sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    flat = [ax for row in axes for ax in row]
    for ax, (family, panel) in zip(flat, sorted(families.items())):
        metrics = sorted({r["metric"] for r in panel})
        step = 0.8 / max(1, len(metrics))
        for j, metric in enumerate(metrics):
            labelled = False
            for r in (r for r in panel if r["metric"] == metric):
                y = methods.index(r["method"]) + (j - (len(metrics) - 1) / 2) * step
                low, high = r.get("ci95_low"), r.get("ci95_high")
                err = None
                if low is not None and high is not None:
                    err = [[max(0.0, r["mean"] - low)], [max(0.0, high - r["mean"])]]
                ax.errorbar(r["mean"], y, xerr=err, fmt="o", markersize=4, color=colours[j % len(colours)],
                            capsize=3, label=None if labelled else metric)
                labelled = True
        limits = metric_family(metrics[0])[1]
        if limits:
            ax.set_xlim(limits[0] - 0.02 * (limits[1] - limits[0]), limits[1] + 0.02 * (limits[1] - limits[0]))
        ax.set_title(family, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        if len(metrics) > 1:  # under the panel, clear of the points (one metric: the title names it)
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(2, len(metrics)),
                      frameon=False)
    axes[0][0].set_yticks(range(len(methods)), methods, fontsize=8)
    axes[0][0].set_ylim(len(methods) - 0.4, -0.6)  # shared: the first method on top in every panel
    for ax in flat[len(families):]:
        ax.set_visible(False)
    if not families:
        axes[0][0].set_visible(True)
        axes[0][0].text(0.5, 0.5, "no scores", ha="center", va="center", transform=axes[0][0].transAxes)
    for row in axes:  # sharey hides inner labels; the first panel of each row shows the methods in full
        row[0].tick_params(axis="y", labelleft=True, labelsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_PLOT_DPI)
    plt.close(fig)
    return buffer.getvalue()


_FONTS: dict[int, object] = {}


def _font(size: int):
    """DejaVu Sans (shipped with matplotlib, so always here) at `size` px: a TrueType font with ′, ✓, ✗ and …,
    unlike PIL's default bitmap font."""
    if size not in _FONTS:
        from matplotlib import font_manager
        from PIL import ImageFont

        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
        try:
            _FONTS[size] = ImageFont.truetype(path, size)
        except OSError:  # matplotlib fell back to a font PIL cannot open: PIL's own scalable default
            _FONTS[size] = ImageFont.load_default(size)
    return _FONTS[size]


def _wrap_label(text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` px, broken after `_ - = , / space` or before `[ (` (inside a word
    only where a piece alone is wider): the lines joined give `text` back (nothing is cut)."""
    import re

    lines: list[str] = []
    line = ""
    for piece in (p for p in re.split(r"(?<=[_\-=,/ ])|(?=[\[(])", text) if p):
        if font.getlength(line + piece) <= width:
            line += piece
            continue
        if line:
            lines.append(line)
        line = ""
        for char in piece:  # a piece wider than a line: break it where it fills the line
            if line and font.getlength(line + char) > width:
                lines.append(line)
                line = ""
            line += char
    return [*lines, line] if line or not lines else lines


def _short_id(text: str, font, width: int, max_lines: int = 3) -> list[str]:
    """A triplet id in at most `max_lines` lines of `width` px, its middle elided (…) when longer."""
    lines = _wrap_label(text, font, width)
    if len(lines) <= max_lines:
        return lines
    keep = len(text)
    while keep > 2:
        keep -= 1
        short = text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2:]
        lines = _wrap_label(short, font, width)
        if len(lines) <= max_lines:
            return lines
    return lines[:max_lines]


def _verdict_colour(text: str) -> str:
    """Green for a right B′ (✓) or one that won most of its pairs, red for a wrong one or one that won
    fewer than half, grey otherwise."""
    if text.startswith(("✓", "✗")):
        return "#1b7a32" if text.startswith("✓") else "#b00020"
    won = re.search(r"wins (\d+)/(\d+)", text)
    if won and int(won[2]):
        return "#1b7a32" if 2 * int(won[1]) > int(won[2]) else "#b00020" if 2 * int(won[1]) < int(won[2]) else "#333"
    return "#333"


def sample_grid(triplets: list[dict], generations: list[dict], load: Callable[[str], Image.Image], *,
                verdicts: dict[tuple[str, str], str] | None = None, max_rows: int = 16, cell: int = 72) -> bytes:
    """The `generations` asset's preview in the UI: one row per usable triplet (the first `max_rows`, then a line
    saying how many more), labelled with its id, and the columns A | A′ | B | B′gt (when any triplet has one) |
    each method's B′ (methods sorted, their names in full, wrapped in the header). `verdicts[(triplet_id,
    method)]`, a short text such as "✓ 3/3", is written on a strip under that B′. PNG bytes."""
    from PIL import ImageOps

    usable = [t for t in triplets if not t.get("error")]
    shown, more = usable[:max_rows], max(0, len(usable) - max_rows)
    methods = sorted({g["method"] for g in generations})
    by_key = {(g["triplet_id"], g["method"]): g.get("b_prime_hash") for g in generations}
    roles = ["a", "a_prime", "b", *(["b_prime_gt"] if any(t.get("b_prime_gt_hash") for t in usable) else [])]
    titles = [ROLE_TITLES[r] for r in roles] + methods
    size = max(9, round(cell / 7))
    font, small = _font(size), _font(max(8, size - 1))
    line_h = size + 3
    gap, pad = 2, 3
    label_w = cell + 8
    headers = [_wrap_label(title, font, cell - 2) for title in titles]
    header_h = pad + line_h * max(len(h) for h in headers) + pad
    strip = {}
    if verdicts is not None:
        strip = {key: _wrap_label(text, small, cell - 2) for key, text in verdicts.items()}
    strip_h = (line_h * max((len(v) for v in strip.values()), default=1) + 2) if verdicts is not None else 0
    row_h = cell + strip_h + gap
    more_h = line_h + 2 * pad if more else 0
    width = label_w + len(titles) * (cell + gap)
    height = header_h + row_h * max(1, len(shown)) + more_h
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((2, header_h - pad - line_h), "triplet", fill="#666", font=small)
    for c, lines in enumerate(headers):
        x = label_w + c * (cell + gap) + cell / 2
        top = header_h - pad - line_h * len(lines)  # bottom-aligned, just above the images
        for i, line in enumerate(lines):
            draw.text((x, top + i * line_h), line, fill="black", font=font, anchor="ma")
    for r, t in enumerate(shown):
        y = header_h + r * row_h
        for i, line in enumerate(_short_id(str(t["triplet_id"]), small, label_w - 6)):
            draw.text((2, y + 2 + i * line_h), line, fill="#333", font=small)
        hashes = [t.get(f"{role}_hash") for role in roles] + [by_key.get((t["triplet_id"], m)) for m in methods]
        for c, h in enumerate(hashes):
            x = label_w + c * (cell + gap)
            if h:
                image = load(h).convert("RGB")
                resample = Image.NEAREST if max(image.size) <= cell else Image.LANCZOS
                image = ImageOps.contain(image, (cell, cell), method=resample)
                grid.paste(image, (x + (cell - image.width) // 2, y + (cell - image.height) // 2))
            else:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill="#eeeeee")
                draw.text((x + cell / 2, y + cell / 2), "none", fill="#999", font=small, anchor="mm")
            method = methods[c - len(roles)] if c >= len(roles) else None
            for i, line in enumerate(strip.get((t["triplet_id"], method), []) if method else []):
                text = verdicts[(t["triplet_id"], method)]
                draw.text((x + cell / 2, y + cell + 1 + i * line_h), line, fill=_verdict_colour(text), font=small,
                          anchor="ma")
    if more:
        draw.text((2, height - more_h + pad), f"… and {more} more triplets: see the report", fill="#333", font=font)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


PRIVILEGED_MARK = "★"
PRIVILEGED_TEXT = "given the instruction"
CATEGORY_METRICS = ("judge_joint", "clip_direction", "gt_psnr")
"""The score #categories shows beside the win rate: the first of these the partition has."""
TEMPLATES = Path(__file__).with_name("templates")


def cell_verdicts(rows: list[GalleryRow], judgements: list[dict]) -> dict[tuple[str, str], str]:
    """A short text per (triplet_id, method) of the gallery, for the B′ grid: the method's pairwise record on that
    triplet, "wins k/n" (n = its consistent pairs there, a tie being no win; every judge's pairs counted), or "no
    consistent pair" where all its pairs there were inconsistent or failed; prefixed "✓ " / "✗ " where the row has
    a `judge_joint` score of 1 / 0. Only B′ of the gallery, with a record or a score, get a text."""
    shown = {(r.triplet_id, m) for r in rows if not r.error for m in r.outputs}
    judged, wins, consistent = set(), defaultdict(int), defaultdict(int)
    seen = set()
    for (_, judge, triplet, method, opponent), pair in pair_outcomes(
            [j | {"dataset": ""} for j in judgements]).items():
        key = (judge, triplet, frozenset((method, opponent)))
        if key in seen:  # a pair stored both ways round counts once
            continue
        seen.add(key)
        outcome = pair["outcome"]
        for me in (method, opponent):
            judged.add((triplet, me))
            if outcome not in ("failed", "inconsistent"):
                consistent[(triplet, me)] += 1
                wins[(triplet, me)] += int(outcome == me)
    out = {}
    for row in rows:
        for method in row.outputs:
            key = (row.triplet_id, method)
            if key not in shown:
                continue
            record = ""
            if key in judged:
                record = f"wins {wins[key]}/{consistent[key]}" if consistent[key] else "no consistent pair"
            joint = row.scores.get(method, {}).get("judge_joint")
            mark = {1.0: "✓", 0.0: "✗"}.get(joint, "") if joint is not None else ""
            text = " ".join(t for t in (mark, record) if t)
            if text:
                out[key] = text
    return out


def _number(value, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:{'+' if signed else ''}.{digits}f}".replace("-", "−")


def _amount(value) -> str:
    """Seconds or megabytes: three significant digits, never an exponent (whole numbers from 100 on,
    thousands separated)."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return np.format_float_positional(value, precision=3, fractional=False, trim="-").replace("-", "−")


@cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True,
                      undefined=StrictUndefined)
    env.filters["num"] = _number
    env.filters["amount"] = _amount
    return env


def _privileged(verdict: dict) -> set[str]:
    return {r["method"] for name in ("leaderboard", "rankings") for r in verdict.get(name) or [] if r["privileged"]}


def _ranking_tables(rankings: list[dict], pool: str) -> list[dict]:
    """[{judge, rows}] of category all in `pool`, one per judge, each strongest first."""
    by_judge = defaultdict(list)
    for r in rankings:
        if r["category"] == ALL and r["pool"] == pool:
            low, high = r["rank_low"], r["rank_high"]
            by_judge[r["judge"]].append(r | {"rank_range": str(low) if low == high else f"{low}–{high}"})
    return [{"judge": judge, "rows": sorted(rows, key=lambda r: (r["rank"], r["method"]))}
            for judge, rows in sorted(by_judge.items())]


def _labelled(estimates: list[dict], privileged: set[str]) -> dict[tuple[str, str], dict]:
    """{(method, config_hash): {method, config (a short hash where a method has several), privileged}},
    example-only methods first, then privileged ones, each by name."""
    configs = defaultdict(set)
    for e in estimates:
        configs[e["method"]].add(e["config_hash"])
    keys = sorted({(e["method"], e["config_hash"]) for e in estimates},
                  key=lambda k: (k[0] in privileged, k[0], k[1] or ""))
    return {k: {"method": k[0], "privileged": k[0] in privileged,
                "config": f"{(k[1] or '')[:8]}" if len(configs[k[0]]) > 1 else ""} for k in keys}


def _summary(leaderboard: list[dict], privileged: set[str]) -> dict:
    """The #summary table: method × metric (category all, cost left to #cost), best example-only mean shaded."""
    estimates = [e for e in leaderboard if e["category"] == ALL and e["metric"] not in COST_METRICS]
    rows = _labelled(estimates, privileged)
    metrics = sorted({e["metric"] for e in estimates})
    cells = {(e["method"], e["config_hash"], e["metric"]): e for e in estimates}
    best = {}
    for metric in metrics:
        means = [e["mean"] for (m, _, name), e in cells.items() if name == metric and m not in privileged]
        if means:
            best[metric] = (min if metric in LOWER_IS_BETTER else max)(means)
    out = []
    for (method, config), label in rows.items():
        row = label | {"cells": {}}
        for metric in metrics:
            e = cells.get((method, config, metric))
            if e is not None:
                row["cells"][metric] = e | {"best": not label["privileged"] and e["mean"] == best.get(metric)}
        out.append(row)
    return {"metrics": [{"name": m, "arrow": better(m), "direction": "lower" if better(m) == "↓" else "higher"}
                        for m in metrics],
            "rows": out, "any_privileged": any(r["privileged"] for r in out)}


def _cost(leaderboard: list[dict], privileged: set[str]) -> list[dict]:
    estimates = [e for e in leaderboard if e["category"] == ALL and e["metric"] in COST_METRICS]
    cells = {(e["method"], e["config_hash"], e["metric"]): e for e in estimates}
    out = []
    for (method, config), label in _labelled(estimates, privileged).items():
        seconds, memory = (cells.get((method, config, m)) for m in COST_METRICS)
        out.append(label | {"seconds": seconds, "memory": memory, "n": max(e["n"] for e in (seconds, memory) if e)})
    return out


def _categories(leaderboard: list[dict], rankings: list[dict], privileged: set[str]) -> dict:
    """The #categories table: per method × kind of edit (not "all"), the judge's mean win rate among all methods
    and the mean of the first CATEGORY_METRICS score the partition has."""
    names = sorted({r["category"] for r in [*leaderboard, *rankings] if r["category"] not in (ALL, None)})
    scored = {e["metric"] for e in leaderboard if e["category"] != ALL}
    metric = next((m for m in CATEGORY_METRICS if m in scored), None)
    judges = sorted({r["judge"] for r in rankings if r["pool"] == "all"})
    rates = {(r["method"], r["category"], r["judge"]): r["mean_win_rate"] for r in rankings if r["pool"] == "all"}
    scores = defaultdict(list)
    for e in leaderboard:
        if e["metric"] == metric:
            scores[(e["method"], e["category"])].append(e)
    methods = sorted({r["method"] for r in [*leaderboard, *rankings] if r["category"] in names},
                     key=lambda m: (m in privileged, m))
    rows = []
    for method in methods:
        cells = {}
        for category in names:
            found = [(j, rates[(method, category, j)]) for j in judges if (method, category, j) in rates]
            lines = [(f"{j}: " if len(judges) > 1 else "") + _number(rate) for j, rate in found]
            text = "; ".join(f"{metric} {_number(e['mean'])} · n={e['n']}" for e in scores.get((method, category), []))
            first = next((rate for _, rate in found if rate is not None), None)
            cells[category] = {"win_rates": lines, "metric": text, "sort": "" if first is None else f"{first:.6g}"}
        rows.append({"method": method, "privileged": method in privileged, "cells": cells})
    return {"names": names, "metric": metric, "rows": rows}


def _config_entries(configs: dict) -> list[dict]:
    out = []
    for digest, entry in configs.items():
        if isinstance(entry, str):  # a config's JSON alone
            entry = {"method": "", "config": json.loads(entry)}
        out.append({"hash": digest, "short": digest if len(digest) <= 12 else f"{digest[:12]}…",
                    "method": entry.get("method") or "?",
                    "json": json.dumps(entry.get("config"), indent=1, sort_keys=True)})
    return sorted(out, key=lambda c: (c["method"], c["hash"]))


def _triplet_rows(rows: list[GalleryRow], methods: list[str], run_href: Callable[[str], str]) -> list[dict]:
    out = []
    for row in rows:
        outputs = []
        for method in methods:
            g = row.outputs.get(method)
            if g is not None:
                g = {"href": g["href"], "error": g["error"], "config_hash": g["config_hash"], "alt": f"B′ {method}",
                     "run_id": g.get("run_id"), "run_href": run_href(g["run_id"]) if g.get("run_id") else None,
                     "scores": sorted(row.scores.get(method, {}).items())}
            outputs.append(g)
        out.append({"triplet_id": row.triplet_id, "instruction": row.instruction, "error": row.error,
                    "inputs": [{"href": row.inputs.get(r), "alt": t} for r, t in ROLE_TITLES.items()],
                    "outputs": outputs})
    return out


def gallery_html(title: str, rows: list[GalleryRow], verdict: dict[str, list[dict]], plot_png: bytes | None,
                 configs: dict[str, dict], run_href: Callable[[str], str]) -> str:
    """The page (templates/report.html.j2). `verdict`: the partition's tables
    (evaluation.presentation.views.partition_verdict: leaderboard, win_rates, rankings, judge_quality,
    judge_agreement, survey_results; any may be empty or missing); `configs`: config hash → {"method":
    its label, "config": the resolved config}; `run_href(run_id)`: the link to a run in the UI."""
    leaderboard = list(verdict.get("leaderboard") or [])
    rankings = list(verdict.get("rankings") or [])
    privileged = _privileged(verdict)
    ranking_all = _ranking_tables(rankings, "all")
    if not any(r["privileged"] for t in ranking_all for r in t["rows"]):
        ranking_all = []  # the same methods as #ranking: nothing to add
    methods = sorted({m for row in rows for m in row.outputs})
    return _environment().get_template("report.html.j2").render(
        title=title, privileged=privileged, mark=PRIVILEGED_MARK, mark_text=PRIVILEGED_TEXT, min_n=MIN_BOOTSTRAP_N,
        ranking=_ranking_tables(rankings, "example_only"), ranking_all=ranking_all, rankings_exist=bool(rankings),
        summary=_summary(leaderboard, privileged), cost=_cost(leaderboard, privileged),
        categories=_categories(leaderboard, rankings, privileged),
        win_rates=[r for r in verdict.get("win_rates") or [] if r["category"] == ALL],
        judge_quality=list(verdict.get("judge_quality") or []),
        judge_agreement=list(verdict.get("judge_agreement") or []),
        survey_results=list(verdict.get("survey_results") or []),
        plot=base64.b64encode(plot_png).decode() if plot_png else None,
        roles=list(ROLE_TITLES.values()), methods=methods, rows=_triplet_rows(rows, methods, run_href),
        configs=_config_entries(configs))
