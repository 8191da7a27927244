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


def scores_plot(estimates: list[dict]) -> bytes:
    """One panel per metric family: a point per method × metric with its 95 % interval; PNG bytes."""
    families: dict[str, list[dict]] = {}
    for e in estimates:
        families.setdefault(metric_family(e["metric"])[0], []).append(e)
    methods = sorted({e["method"] for e in estimates})
    n = max(1, len(families))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 0.45 * max(3, len(methods)) + 1.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (family, rows) in zip(axes[0], sorted(families.items())):
        metrics = sorted({r["metric"] for r in rows})
        step = 0.8 / max(1, len(metrics))
        for j, metric in enumerate(metrics):
            for r in (r for r in rows if r["metric"] == metric):
                y = methods.index(r["method"]) + (j - (len(metrics) - 1) / 2) * step
                low, high = r["ci95_low"], r["ci95_high"]
                err = [[r["mean"] - low], [high - r["mean"]]] if low is not None else None
                ax.errorbar(r["mean"], y, xerr=err, fmt="o", color=colours[j % len(colours)], capsize=3,
                            label=metric if r["method"] == methods[0] or len(methods) == 1 else None)
        limits = metric_family(metrics[0])[1]
        if limits:
            ax.set_xlim(limits[0] - 0.02 * (limits[1] - limits[0]), limits[1] + 0.02 * (limits[1] - limits[0]))
        ax.set_yticks(range(len(methods)), methods, fontsize=8)
        ax.set_ylim(-0.6, len(methods) - 0.4)
        ax.invert_yaxis()
        ax.set_title(family, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, fontsize=7, loc="best")
    if not families:
        axes[0][0].text(0.5, 0.5, "no scores", ha="center", va="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def sample_grid(triplets: list[dict], generations: list[dict], load: Callable[[str], Image.Image],
                max_rows: int = 6, cell: int = 64) -> bytes:
    """A | A′ | B | B′ of each method, for the first `max_rows` usable triplets; PNG bytes (the
    `generations` asset's preview in the UI)."""
    usable = [t for t in triplets if not t["error"]][:max_rows]
    methods = sorted({g["method"] for g in generations})
    by_key = {(g["triplet_id"], g["method"]): g["b_prime_hash"] for g in generations}
    titles = ["A", "A′", "B", *methods]
    label_h = 14
    grid = Image.new("RGB", (cell * len(titles), label_h + cell * max(1, len(usable))), "white")
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(titles):
        draw.text((c * cell + 2, 1), title[: cell // 6], fill="black")
    for r, t in enumerate(usable):
        hashes = [t["a_hash"], t["a_prime_hash"], t["b_hash"], *(by_key.get((t["triplet_id"], m)) for m in methods)]
        for c, h in enumerate(hashes):
            if h:
                grid.paste(load(h).resize((cell, cell), Image.NEAREST), (c * cell, label_h + r * cell))
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
