"""The HTML report in headless Chromium (Debian's chromium, driven by playwright): every image
loads, nothing is fetched from a network, clicking a header sorts the summary table, and the verdict's
sections (ranking, cost, kinds of edit, the judge's quality, configs) show the pipeline's own results."""

import os
import re
import shutil

import pyarrow.parquet as pq
import pytest

from orchestration.materialize import materialize_partition

CHROMIUM = shutil.which("chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

if CHROMIUM is None and os.environ.get("CI"):  # CI installs it (scripts/install-browser): absent there is a failure
    raise RuntimeError("chromium is not installed: run scripts/install-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install-browser)")


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    home = tmp_path_factory.mktemp("report-home")
    result = materialize_partition("toyshard.001", str(home), methods=["no_edit", "sdedit", "differential_diffusion"])
    assert result.success
    page = home / "reports" / "dataset=toyshard.001" / "index.html"
    assert page.exists()
    return page


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _column(page, table: str, index: int) -> list[str]:
    return page.eval_on_selector_all(f"#{table} tbody tr", f"rows => rows.map(r => r.cells[{index}].textContent)")


def test_report_loads_every_image_and_fetches_nothing_from_a_network(report_page, browser):
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report_page.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src, i.complete && i.naturalWidth > 0])")
    # 2 triplets × (A, A′, B, B′gt + 3 methods' B′) thumbnails, and the plot
    assert len(images) == 2 * (4 + 3) + 1
    assert all(ok for _, ok in images), [src for src, ok in images if not ok]
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    # the summary: one row per method, the triplets: one row per triplet with each method side by side
    # (sdedit and differential_diffusion read the toy triplet's instruction: marked ★, listed after no_edit)
    assert _column(page, "summary", 0) == ["no_edit", "differential_diffusion ★", "sdedit ★"]
    assert len(_column(page, "triplets", 0)) == 2
    headers = page.eval_on_selector_all("#triplets thead th", "hs => hs.map(h => h.textContent)")
    assert headers == ["triplet", "A", "A′", "B", "B′gt", "differential_diffusion ★", "no_edit", "sdedit ★"]
    # every B′ links to its config and its run
    links = page.eval_on_selector_all("#triplets a[href^='#config-']", "as => as.map(a => a.getAttribute('href'))")
    assert len(links) == 6 and all(page.query_selector(f"[id='{h[1:]}']") for h in links)
    page.close()


def test_clicking_a_header_sorts_the_summary(report_page, browser):
    page = browser.new_page()
    page.goto(report_page.as_uri())
    headers = page.eval_on_selector_all("#summary thead th", "hs => hs.map(h => h.textContent)")
    index = next(i for i, h in enumerate(headers) if h.startswith("judge_keep"))
    assert headers[index].endswith("↑")

    def values() -> list[float]:
        return [float(v) for v in page.eval_on_selector_all(
            "#summary tbody tr", f"rows => rows.map(r => r.cells[{index}].getAttribute('data-sort'))")]

    page.click(f"#summary thead th:nth-child({index + 1})")
    assert values() == sorted(values(), reverse=True)  # first click: best first
    page.click(f"#summary thead th:nth-child({index + 1})")
    assert values() == sorted(values())
    page.click("#summary thead th:nth-child(1)")  # the method column sorts by name
    names = _column(page, "summary", 0)
    assert names == sorted(names, reverse=True)
    best = page.eval_on_selector_all(f"#summary tbody td:nth-child({index + 1}).best", "cs => cs.length")
    assert best >= 1
    page.close()


PRIVILEGED = ["differential_diffusion ★", "sdedit ★"]
TOY_CATEGORIES = {"size", "colour", "shape", "background"}


def _text(page, selector: str) -> str:
    return " ".join(page.eval_on_selector(selector, "e => e.textContent").split())


def test_the_verdict_sections_show_the_partition(report_page, browser):
    page = browser.new_page()
    page.goto(report_page.as_uri())
    # the example-only ranking never lists a method given the instruction (here no_edit is alone there: no pair)
    ranking = _text(page, "#ranking")
    assert "sdedit" not in ranking and "differential_diffusion" not in ranking
    assert "No ranking of example-only methods" in ranking
    # every method ranked, those given the instruction marked, with the legend
    ranked = page.eval_on_selector_all("#ranking-all tbody tr", "rows => rows.map(r => r.cells[1].textContent)")
    assert sorted(ranked) == ["differential_diffusion ★", "no_edit", "sdedit ★"]
    assert _text(page, "#ranking-all .legend").startswith("★ given the instruction:")
    # per kind of edit: a column per toy category of the shard's usable triplets, a row per method
    home = report_page.parents[2]
    triplets = pq.read_table(next((home / "tables" / "triplets" / "dataset=toyshard.001").glob("*.parquet")))
    categories = sorted({t["category"] for t in triplets.to_pylist() if not t["error"]})
    assert categories and set(categories) <= TOY_CATEGORIES
    headers = page.eval_on_selector_all("#categories thead th", "hs => hs.map(h => h.textContent)")
    assert headers == ["method", *categories]
    assert sorted(_column(page, "categories", 0)) == ["differential_diffusion ★", "no_edit", "sdedit ★"]
    for cell in page.eval_on_selector_all("#categories tbody td:not(:first-child)", "cs => cs.map(c => c.innerText)"):
        assert re.fullmatch(r"\d\.\d{3}\njudge_joint \d\.\d{3} · n=\d+", cell), cell
    # cost: one row per method, seconds and megabytes as numbers
    cost = page.eval_on_selector_all("#cost tbody tr", "rows => rows.map(r => Array.from(r.cells, c => "
                                     "[c.textContent, c.getAttribute('data-sort')]))")
    assert sorted(r[0][0] for r in cost) == ["differential_diffusion ★", "no_edit", "sdedit ★"]
    for row in cost:
        seconds, memory = float(row[1][1]), float(row[2][1])
        assert 0 < seconds < 600 and 10 < memory < 1e6, row
        for (text, _), value in zip(row[1:3], (seconds, memory)):  # shown: the mean to 3 digits, then its interval
            assert float(re.match(r"[\d.,]+", text).group().replace(",", "")) == pytest.approx(value, rel=5e-3)
        assert row[3][0] == "2"  # n: a B′ per triplet
    assert "amortised over the triplets that used it" in _text(page, "#cost")
    # the judge's quality: position bias with its interval, or n/a where the judge decided no ask (all ties)
    quality = page.eval_on_selector_all("#judge-quality tbody tr", "rows => rows.map(r => Array.from(r.cells, "
                                        "c => c.textContent.trim()))")
    headers = page.eval_on_selector_all("#judge-quality thead th", "hs => hs.map(h => h.textContent)")
    assert headers[:3] == ["judge", "position bias", "decided asks"] and len(quality) == 1
    judge, bias, decided = quality[0][:3]
    assert judge == "toy-judge-clip"
    if decided == "0":
        assert bias == "n/a (no decided ask)"
    else:
        assert re.fullmatch(r"\d\.\d{3}\[\d\.\d{3}, \d\.\d{3}\]", bias), bias
    assert _text(page, "#judge-agreement .note") == "No human study on this partition."
    # each config heading names its method and its hash, the anchor the B′ link to
    configs = page.eval_on_selector_all("#configs h3", "hs => hs.map(h => [h.id, h.textContent])")
    assert sorted(re.sub(r" — .*", "", text) for _, text in configs) == ["differential_diffusion", "no_edit", "sdedit"]
    for anchor, text in configs:
        digest = anchor.removeprefix("config-")
        assert re.fullmatch(r"[0-9a-f]{8,}", digest) and text.endswith(f" — {digest[:12]}" + ("…" if len(digest) > 12
                                                                                          else "")), (anchor, text)
    page.close()
