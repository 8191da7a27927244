"""The per-partition report: one self-contained HTML page (no network: styles, script and plot
inline; images by relative path) and the B′ sample grid the `generations` asset shows.

The page has
- a method × metric table, sortable by clicking a header, each cell the mean with its 95 %
  interval and n (evaluation.stats), ↑/↓ saying which way is better, the best per column marked;
- one row per triplet: A, A′, B and B′gt once, then each method's B′ side by side, each B′
  linked to its config (hash and JSON) and to the Dagster run that made it;
- a plot of the same means and intervals, one panel per metric family, on that family's scale.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from evaluation.stats import summarise  # noqa: E402

ROLE_TITLES = {"a": "A", "a_prime": "A′", "b": "B", "b_prime_gt": "B′gt"}
LOWER_IS_BETTER = frozenset({"gt_pixel_mse"})


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


def summary(metric_rows: list[dict]) -> list[dict]:
    """[{method, metric, n, mean, ci95_low, ci95_high, interval}] (evaluation.stats.summarise)."""
    return summarise(metric_rows, by=("method", "metric"))


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
    return "#1b7a32" if text.startswith(("✓", "wins")) else "#b00020" if text.startswith(("✗", "loses")) else "#333"


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


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: center; vertical-align: top; font-size: 13px; }
th.sortable { cursor: pointer; background: #f4f4f4; user-select: none; }
th.sortable:hover { background: #e8e8e8; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td.best { font-weight: bold; background: #e6f4ea; }
.ci, .n, .meta { color: #666; font-size: 11px; }
img.plot { max-width: 100%; }
img.thumb { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; background: #eee; }
.error { color: #b00020; font-size: 11px; max-width: 14em; display: inline-block; }
pre { text-align: left; font-size: 11px; white-space: pre-wrap; }
"""

# Click a header: sort the table's rows by that column (numbers by data-sort, else text), again to reverse.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th.sortable").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.getAttribute("aria-sort") === "descending" ? 1 : -1;
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var key = function (row) {
        var c = row.cells[col], v = c.getAttribute("data-sort");
        return v === null ? c.textContent.trim() : (v === "" ? NaN : parseFloat(v));
      };
      rows.sort(function (x, y) {
        var a = key(x), b = key(y);
        if (typeof a === "number" || typeof b === "number") {
          if (isNaN(a)) return 1; if (isNaN(b)) return -1; return dir * (a - b);
        }
        return dir * String(a).localeCompare(String(b));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _img(href: str | None, alt: str) -> str:
    if not href:
        return "—"
    return f'<a href="{html.escape(href)}"><img class="thumb" src="{html.escape(href)}" alt="{html.escape(alt)}"></a>'


def _summary_table(estimates: list[dict]) -> str:
    methods = sorted({e["method"] for e in estimates})
    metrics = sorted({e["metric"] for e in estimates})
    cells = {(e["method"], e["metric"]): e for e in estimates}
    best = {}
    for metric in metrics:
        means = [cells[(m, metric)]["mean"] for m in methods if (m, metric) in cells]
        best[metric] = (min if metric in LOWER_IS_BETTER else max)(means)
    head = "".join(f'<th class="sortable" title="{"lower" if better(m) == "↓" else "higher"} is better">'
                   f"{html.escape(m)} {better(m)}</th>" for m in metrics)
    out = ['<table class="sortable" id="summary"><thead><tr><th class="sortable">method</th>', head,
           "</tr></thead><tbody>"]
    for method in methods:
        out.append(f"<tr><td>{html.escape(method)}</td>")
        for metric in metrics:
            e = cells.get((method, metric))
            if e is None:
                out.append('<td data-sort="">—</td>')
                continue
            ci = (f'<br><span class="ci">[{e["ci95_low"]:.3f}, {e["ci95_high"]:.3f}]</span>'
                  if e["ci95_low"] is not None else "")
            mark = ' class="best"' if e["mean"] == best[metric] else ""
            out.append(f'<td data-sort="{e["mean"]:.6g}"{mark}>{e["mean"]:.3f}{ci}'
                       f'<br><span class="n">n={e["n"]}</span></td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _win_rate_table(rates: list[dict]) -> str:
    head = "".join(f'<th class="sortable">{c}</th>' for c in ("method", "opponent", "judge", "win rate", "wins",
                                                              "losses", "ties", "inconsistent", "failed"))
    out = [f'<table class="sortable" id="win-rates"><thead><tr>{head}</tr></thead><tbody>']
    for r in rates:
        rate = ("—" if r["win_rate"] is None else
                f'{r["win_rate"]:.3f}<br><span class="ci">[{r["ci_low"]:.3f}, {r["ci_high"]:.3f}]</span>')
        share = "" if r["inconsistency_rate"] is None else f' ({r["inconsistency_rate"]:.0%})'
        cells = [html.escape(r["method"]), html.escape(r["opponent"]), html.escape(r["judge"]), rate,
                 r["wins"], r["losses"], r["ties"], f'{r["inconsistent"]}{share}', r["failed"]]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def gallery_html(title: str, rows: list[GalleryRow], estimates: list[dict], plot_png: bytes | None,
                 configs: dict[str, str], run_href: Callable[[str], str], win_rates: list[dict] = ()) -> str:
    """The page. `configs`: config hash → its JSON; `run_href(run_id)`: the link to a run in the UI;
    `win_rates`: the pairwise judge's (evaluation.pairwise.win_rates), shown beside the scores."""
    methods = sorted({m for row in rows for m in row.outputs})
    out = [f"<!doctype html><html lang='en'><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>",
           "<h2>Summary</h2><p class='meta'>Mean over triplets, 95 % interval (Wilson for 0/1 judge scores, "
           "Student's t otherwise) and n; ↑/↓: which way is better; the best of each column is shaded. "
           "Click a header to sort.</p>", _summary_table(estimates)]
    if win_rates:
        out += ["<h2>Pairwise judge</h2><p class='meta'>Each pair of B′ shown twice, the order swapped; win rate = "
                "wins over the pairs whose two answers agree (95 % Wilson interval); inconsistent = the answer "
                "flipped with the order; failed = an answer that could not be parsed.</p>",
                _win_rate_table(win_rates)]
    if plot_png:
        out.append(f'<p><img class="plot" alt="scores" src="data:image/png;base64,'
                   f'{base64.b64encode(plot_png).decode()}"></p>')
    out.append('<h2>Triplets</h2><table class="sortable" id="triplets"><thead><tr>'
               '<th class="sortable">triplet</th>'
               + "".join(f"<th>{t}</th>" for t in ("A", "A′", "B", "B′gt"))
               + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "</tr></thead><tbody>")
    for row in rows:
        first = f"<td>{html.escape(row.triplet_id)}" + (
            f'<br><span class="meta">{html.escape(row.instruction)}</span>' if row.instruction else "") + "</td>"
        inputs = "".join(f"<td>{_img(row.inputs.get(r), ROLE_TITLES[r])}</td>" for r in ROLE_TITLES)
        if row.error:
            out.append(f'<tr>{first}{inputs}<td colspan="{max(1, len(methods))}">'
                       f'<span class="error">unusable triplet: {html.escape(row.error)}</span></td></tr>')
            continue
        cells = []
        for method in methods:
            g = row.outputs.get(method)
            if g is None:
                cells.append("<td>—</td>")
                continue
            body = (f'<span class="error">{html.escape(g["error"])}</span>' if g["error"]
                    else _img(g["href"], f"B′ {method}"))
            scores = "<br>".join(f"{html.escape(k)} {v:.3f}" for k, v in sorted(row.scores.get(method, {}).items()))
            links = f'<a href="#config-{g["config_hash"]}">config {g["config_hash"][:8]}</a>'
            if g.get("run_id"):
                links += f' · <a href="{html.escape(run_href(g["run_id"]))}">run {g["run_id"][:8]}</a>'
            cells.append(f'<td>{body}<br><span class="meta">{links}<br>{scores}</span></td>')
        out.append(f"<tr>{first}{inputs}{''.join(cells)}</tr>")
    out.append("</tbody></table><h2>Configs</h2>")
    for digest, config in sorted(configs.items()):
        pretty = json.dumps(json.loads(config), indent=1, sort_keys=True)
        out.append(f'<h3 id="config-{digest}">{digest}</h3><pre>{html.escape(pretty)}</pre>')
    out.append(f"<script>{_SCRIPT}</script></html>")
    return "\n".join(out)
