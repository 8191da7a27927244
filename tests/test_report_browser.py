"""The HTML report in headless Chromium (Debian's chromium, driven by playwright): every image
loads, nothing is fetched from a network, and clicking a header sorts the summary table."""

import os
import shutil

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
    assert sorted(_column(page, "summary", 0)) == ["differential_diffusion", "no_edit", "sdedit"]
    assert len(_column(page, "triplets", 0)) == 2
    headers = page.eval_on_selector_all("#triplets thead th", "hs => hs.map(h => h.textContent)")
    assert headers == ["triplet", "A", "A′", "B", "B′gt", "differential_diffusion", "no_edit", "sdedit"]
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
