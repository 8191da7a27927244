"""The report page (evaluation.presentation.report.gallery_html) from hand-made verdicts, parsed with html.parser: every
section in its place with its numbers, privileged methods marked and kept out of the example-only ranking and
shading, empty tables as one-line notes; and the B′ grid's per-cell verdicts (cell_verdicts). No pipeline."""

from __future__ import annotations

from html.parser import HTMLParser
from importlib import resources

import pytest

from evaluation.presentation.report import HEADLINE_METRICS, LOWER_IS_BETTER, GalleryRow, cell_verdicts, gallery_html

VOID = {"meta", "br", "img", "link", "input", "hr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return " " if self.tag == "br" else "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def clean(self) -> str:
        return " ".join(self.text().split())

    def find_all(self, tag: str | None = None, **attrs) -> list[Node]:
        """Descendants with this tag (any, if None) and these attributes (`class_`: one of its classes)."""
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and all(c._has(a, v) for a, v in attrs.items()):
                    out.append(c)
                out += c.find_all(tag, **attrs)
        return out

    def _has(self, attr: str, value: str) -> bool:
        if attr == "class_":
            return value in (self.attrs.get("class") or "").split()
        return self.attrs.get(attr) == value

    def by_id(self, ident: str) -> Node | None:
        found = self.find_all(id=ident)
        assert len(found) <= 1, f"id {ident!r} is not unique"
        return found[0] if found else None

    def rows(self) -> list[list[str]]:
        """The cells' clean texts of each body row of this table."""
        return [[td.clean() for td in tr.find_all("td")] for tr in self.find_all("tbody")[0].find_all("tr")]

    def headers(self) -> list[str]:
        return [th.clean() for th in self.find_all("thead")[0].find_all("th")]


class Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("document", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_endtag(self, tag):
        node = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.node = node.parent

    def handle_data(self, data):
        self.node.children.append(data)


def parse(page: str) -> Node:
    parser = Parser()
    parser.feed(page)
    parser.close()
    return parser.root


SECTIONS = ["ranking", "ranking-all", "summary", "cost", "categories", "win-rates", "judge-quality",
            "judge-agreement", "plot", "triplets", "configs"]
JUDGE = "toy-judge-clip"
CONFIGS = {"aaaa1111bbbb": "copy_b", "cccc2222dddd": "difference_inversion", "eeee3333ffff": "instruct_pix2pix"}
HASH = {method: digest for digest, method in CONFIGS.items()}
PRIVILEGED = {"instruct_pix2pix"}


def _estimate(method, metric, mean, n=8, low=None, high=None, category="all", interval=None):
    return {"dataset": "toy", "category": category, "method": method, "metric": metric, "config_hash": HASH[method],
            "privileged": method in PRIVILEGED, "n": n, "mean": mean, "ci95_low": low, "ci95_high": high,
            "interval": interval or ("none" if low is None else "bootstrap")}


def _ranking(method, rank, strength, low, high, rank_low, rank_high, rate, votes, pool, category="all",
             judge=JUDGE):
    return {"dataset": "toy", "judge": judge, "category": category, "pool": pool, "method": method,
            "privileged": method in PRIVILEGED, "votes": votes, "strength": strength, "ci_low": low, "ci_high": high,
            "rank": rank, "rank_low": rank_low, "rank_high": rank_high, "mean_win_rate": rate}


def _win_rate(method, opponent, wins, losses, ties, rate, low, high):
    return {"dataset": "toy", "judge": JUDGE, "category": "all", "method": method, "opponent": opponent,
            "pairs": wins + losses + ties, "wins": wins, "losses": losses, "ties": ties, "inconsistent": 0,
            "failed": 0, "win_rate": rate, "ci_low": low, "ci_high": high, "inconsistency_rate": 0.0}


def full_verdict() -> dict:
    leaderboard = [
        _estimate("copy_b", "judge_joint", 0.25, low=0.1, high=0.55, interval="wilson"),
        _estimate("difference_inversion", "judge_joint", 0.5, low=0.2, high=0.8, interval="wilson"),
        _estimate("instruct_pix2pix", "judge_joint", 0.875, low=0.5, high=0.98, interval="wilson"),
        _estimate("copy_b", "gt_pixel_mse", 0.02, n=3),  # n < 5: no interval
        _estimate("difference_inversion", "gt_pixel_mse", 0.04, low=0.03, high=0.05),
        _estimate("instruct_pix2pix", "gt_pixel_mse", 0.01, low=0.005, high=0.02),
        _estimate("copy_b", "seconds_per_task", 0.002, low=0.001, high=0.003),
        _estimate("difference_inversion", "seconds_per_task", 45.5, low=40.0, high=51.0),
        _estimate("instruct_pix2pix", "seconds_per_task", 3.25, low=3.0, high=3.5),
        _estimate("copy_b", "peak_memory_mb", 900.0, low=890.0, high=910.0),
        _estimate("difference_inversion", "peak_memory_mb", 12345.6, low=12000.0, high=12500.0),
        _estimate("instruct_pix2pix", "peak_memory_mb", 6000.0, low=5900.0, high=6100.0),
        _estimate("copy_b", "judge_joint", 0.0, n=4, low=0.0, high=0.49, category="size", interval="wilson"),
        _estimate("difference_inversion", "judge_joint", 0.75, n=4, low=0.3, high=0.95, category="size",
                  interval="wilson"),
        _estimate("copy_b", "judge_joint", 0.5, n=4, low=0.15, high=0.85, category="colour", interval="wilson"),
    ]
    rankings = [
        _ranking("difference_inversion", 1, 0.6, 0.1, 1.2, 1, 1, 0.75, 8, "example_only"),
        _ranking("copy_b", 2, -0.6, -1.2, -0.1, 2, 2, 0.25, 8, "example_only"),
        _ranking("instruct_pix2pix", 1, 0.9, 0.2, 1.6, 1, 2, 0.8125, 16, "all"),
        _ranking("difference_inversion", 2, 0.1, -0.5, 0.7, 1, 3, 0.5, 16, "all"),
        _ranking("copy_b", 3, -1.0, -1.8, -0.3, 2, 3, 0.1875, 16, "all"),
        _ranking("difference_inversion", 1, 0.4, 0.0, 0.9, 1, 2, 0.625, 8, "all", category="size"),
        _ranking("copy_b", 2, -0.4, -0.9, 0.0, 1, 2, 0.375, 8, "all", category="size"),
    ]
    win_rates = [_win_rate("difference_inversion", "copy_b", 6, 2, 0, 0.75, 0.41, 0.93),
                 _win_rate("copy_b", "difference_inversion", 2, 6, 0, 0.25, 0.07, 0.59)]
    quality = [{"dataset": "toy", "judge": JUDGE, "asks": 48, "failed_asks": 1, "pairs": 24, "inconsistent": 3,
                "inconsistency_rate": 3 / 23, "decided_asks": 40, "first_shown_wins": 22, "position_bias": 0.55,
                "position_bias_low": 0.4, "position_bias_high": 0.69}]
    agreement = [{"dataset": "toy", "judge": JUDGE, "survey_id": "0123456789abcdef", "tasks": 12, "agreements": 9,
                  "agreement_rate": 0.75, "agreement_low": 0.47, "agreement_high": 0.91, "kappa": 0.5,
                  "kappa_low": -0.1, "kappa_high": 0.9}]
    survey = [{"dataset": "toy", "survey_id": "0123456789abcdef", "method": "copy_b", "votes": 3, "answers": 12,
               "share": 0.25, "ci_low": 0.09, "ci_high": 0.53}]
    return {"leaderboard": leaderboard, "win_rates": win_rates, "rankings": rankings, "judge_quality": quality,
            "judge_agreement": agreement, "survey_results": survey}


def gallery() -> list[GalleryRow]:
    inputs = {r: f"../../blobs/png/{r}.png" for r in ("a", "a_prime", "b", "b_prime_gt")}
    row = GalleryRow("t1", "make it <b>big</b>", inputs)
    for method, digest in HASH.items():
        row.outputs[method] = {"href": f"../../blobs/png/{method}.png", "error": None, "config_hash": digest,
                               "run_id": "run-12345678"}
        row.scores[method] = {"judge_joint": 1.0 if method == "instruct_pix2pix" else 0.0}
    bad = GalleryRow("t2", None, {r: None for r in inputs}, error="A is empty")
    return [row, bad]


def configs() -> dict:
    return {digest: {"method": method, "config": {"steps": 10, "label": method}} for digest, method in CONFIGS.items()}


def render(verdict: dict, plot: bytes | None = b"\x89PNG fake") -> Node:
    page = gallery_html("Image analogies — toy", gallery(), verdict, plot, configs(), lambda r: f"http://ui/runs/{r}")
    assert "<script src" not in page and "http://ui/runs/run-12345678" in page
    return parse(page)


def _methods(table: Node) -> list[str]:
    return [cells[0] for cells in table.rows()]


@pytest.fixture(scope="module")
def page() -> Node:
    return render(full_verdict())


def test_sections_come_in_order_each_with_a_one_line_explanation(page):
    sections = [s.attrs["id"] for s in page.find_all("section")]
    assert sections == SECTIONS
    for ident in SECTIONS:
        section = page.by_id(ident)
        assert section.find_all("p", class_="meta"), ident
    titles = {s.attrs["id"]: next(c for c in s.find_all() if c.tag in ("h2", "h3")).clean()
              for s in page.find_all("section") if s.attrs["id"] != "plot"}
    assert titles["ranking"] == "Ranking" and titles["summary"] == "Scores" and titles["cost"] == "Cost"
    assert titles["categories"] == "By kind of edit" and titles["win-rates"] == "Pairwise judge"


def test_ranking_lists_example_only_methods_with_intervals_and_rank_ranges(page):
    (table,) = page.by_id("ranking").find_all("table")
    assert table.headers() == ["rank", "method", "strength [95 % ci]", "rank range", "mean win rate", "votes"]
    assert table.rows() == [["1", "difference_inversion", "+0.60 [+0.10, +1.20]", "1", "0.750", "8"],
                            ["2", "copy_b", "−0.60 [−1.20, −0.10]", "2", "0.250", "8"]]
    assert "instruct_pix2pix" not in page.by_id("ranking").text()


def test_ranking_all_marks_the_methods_given_the_instruction(page):
    section = page.by_id("ranking-all")
    (table,) = section.find_all("table")
    assert table.rows() == [["1", "instruct_pix2pix ★", "+0.90 [+0.20, +1.60]", "1–2", "0.812", "16"],
                            ["2", "difference_inversion", "+0.10 [−0.50, +0.70]", "1–3", "0.500", "16"],
                            ["3", "copy_b", "−1.00 [−1.80, −0.30]", "2–3", "0.188", "16"]]
    assert section.find_all("p", class_="legend")[0].clean().startswith("★ given the instruction:")


def test_no_ranking_of_all_methods_without_a_privileged_one():
    verdict = full_verdict()
    verdict["rankings"] = [r for r in verdict["rankings"] if not r["privileged"]]
    for r in verdict["rankings"] + verdict["leaderboard"]:
        r["privileged"] = False
    page = render(verdict)
    assert page.by_id("ranking-all") is None and page.by_id("ranking").find_all("table")
    assert "★" not in page.text()


def test_one_ranking_table_per_judge():
    verdict = full_verdict()
    verdict["rankings"] += [r | {"judge": "qwen-vl"} for r in verdict["rankings"] if r["pool"] == "example_only"]
    section = render(verdict).by_id("ranking")
    assert [h.clean() for h in section.find_all("h3")] == ["judge qwen-vl", f"judge {JUDGE}"]
    assert len(section.find_all("table")) == 2


def test_scores_group_privileged_methods_last_and_shade_the_best_example_only_one(page):
    (table,) = page.by_id("summary").find_all("table")
    assert table.headers() == ["method", "gt_pixel_mse ↓", "judge_joint ↑"]  # cost is in #cost
    assert _methods(table) == ["copy_b", "difference_inversion", "instruct_pix2pix ★"]
    rows = table.rows()
    assert rows[0][1] == "0.020 n/a (n < 5) n=3"  # no interval below n = 5, said so
    assert rows[1][1] == "0.040 [0.030, 0.050] n=8"
    assert rows[2][2] == "0.875 [0.500, 0.980] n=8"
    best = {(tr.find_all("td")[0].clean(), i) for tr in table.find_all("tbody")[0].find_all("tr")
            for i, td in enumerate(tr.find_all("td")) if "best" in (td.attrs.get("class") or "").split()}
    # the privileged method has the best mse and judge_joint, but the shading is among example-only methods
    assert best == {("copy_b", 1), ("difference_inversion", 2)}
    assert page.by_id("summary").find_all("p", class_="legend")


def test_cost_shows_seconds_and_memory_per_method(page):
    section = page.by_id("cost")
    (table,) = section.find_all("table")
    assert table.headers() == ["method", "seconds per task ↓", "peak memory MB ↓", "n"]
    assert table.rows() == [["copy_b", "0.002 [0.001, 0.003]", "900 [890, 910]", "8"],
                            ["difference_inversion", "45.5 [40, 51]", "12,346 [12,000, 12,500]", "8"],
                            ["instruct_pix2pix ★", "3.25 [3, 3.5]", "6,000 [5,900, 6,100]", "8"]]
    explanation = section.find_all("p", class_="meta")[0].clean()
    assert "amortised over the triplets that used it" in explanation and "peak resident set size" in explanation


def test_categories_show_win_rate_and_headline_score(page):
    (table,) = page.by_id("categories").find_all("table")
    assert table.headers() == ["method", "colour", "size"]
    assert table.rows() == [["copy_b", "— judge_joint 0.500 · n=4", "0.375 judge_joint 0.000 · n=4"],
                            ["difference_inversion", "—", "0.625 judge_joint 0.750 · n=4"]]


def test_pairwise_judge_quality_and_agreement(page):
    (rates,) = page.by_id("win-rates").find_all("table")
    assert rates.rows()[0] == ["difference_inversion", "copy_b", JUDGE, "0.750 [0.410, 0.930]", "6", "2", "0",
                               "0 (0%)", "0"]
    (quality,) = page.by_id("judge-quality").find_all("table")
    assert quality.headers() == ["judge", "position bias", "decided asks", "inconsistency rate", "pairs", "asks",
                                 "failed asks"]
    assert quality.rows() == [[JUDGE, "0.550 [0.400, 0.690]", "40", "0.130", "24", "48", "1"]]
    agreement, shares = page.by_id("judge-agreement").find_all("table")
    assert agreement.rows() == [[JUDGE, "0123456789abcdef", "12", "0.750 [0.470, 0.910]", "+0.50 [−0.10, +0.90]"]]
    assert shares.rows() == [["0123456789abcdef", "copy_b", "3", "12", "0.250 [0.090, 0.530]"]]


def test_triplets_mark_privileged_columns_escape_text_and_link_configs(page):
    (table,) = page.by_id("triplets").find_all("table")
    assert table.headers() == ["triplet", "A", "A′", "B", "B′gt", "copy_b", "difference_inversion",
                               "instruct_pix2pix ★"]
    rows = table.rows()
    assert rows[0][0] == "t1 make it <b>big</b>"  # the instruction as text, not markup
    assert not page.by_id("triplets").find_all("b")
    assert rows[1][-1] == "unusable triplet: A is empty"
    links = [a.attrs["href"] for a in page.by_id("triplets").find_all("a") if a.attrs["href"].startswith("#")]
    assert sorted(links) == sorted(f"#config-{h}" for h in CONFIGS)
    assert all(page.by_id(h[1:]) is not None for h in links)
    assert len(page.find_all("img")) == 4 + 3 + 1  # the first triplet's images and the plot


def test_config_headings_name_the_method_and_the_hash(page):
    headings = [(h.attrs["id"], h.clean()) for h in page.by_id("configs").find_all("h3")]
    assert headings == [(f"config-{h}", f"{m} — {h}") for h, m in sorted(CONFIGS.items(), key=lambda x: x[1])]
    long = "f" * 64
    node = parse(gallery_html("t", [], {}, None, {long: {"method": "visii", "config": {}}}, str))
    (heading,) = node.by_id("configs").find_all("h3")
    assert heading.attrs["id"] == f"config-{long}" and heading.clean() == f"visii — {'f' * 12}…"
    assert long in node.by_id("configs").clean()


@pytest.mark.parametrize("verdict", [{}, {name: [] for name in ("leaderboard", "win_rates", "rankings",
                                                                "judge_quality", "judge_agreement",
                                                                "survey_results")}])
def test_an_empty_verdict_is_a_line_per_section(verdict):
    page = render(verdict, plot=None)
    sections = [s.attrs["id"] for s in page.find_all("section")]
    assert sections == [s for s in SECTIONS if s not in ("ranking-all", "plot")]
    notes = {ident: [p.clean() for p in page.by_id(ident).find_all("p", class_="note")] for ident in sections}
    assert notes["ranking"] == ["No ranking: no pairwise judge ran on this partition."]
    assert notes["summary"] == ["No scores on this partition."]
    assert notes["cost"] == ["No cost recorded on this partition."]
    assert notes["categories"] == ["No kinds of edit on this partition: its triplets have no category."]
    assert notes["win-rates"] == notes["judge-quality"] == ["No pairwise judge ran on this partition."]
    assert notes["judge-agreement"] == ["No human study on this partition."]
    for ident in ("ranking", "summary", "cost", "categories", "win-rates", "judge-quality", "judge-agreement"):
        assert not page.by_id(ident).find_all("table"), ident
    assert len(page.by_id("triplets").find_all("tbody")[0].find_all("tr")) == 2  # the gallery still shows


def test_example_only_ranking_missing_while_all_methods_are_ranked():
    verdict = full_verdict()
    verdict["rankings"] = [r for r in verdict["rankings"] if r["pool"] == "all"]
    page = render(verdict)
    assert page.by_id("ranking").find_all("p", class_="note")[0].clean().startswith("No ranking of example-only")
    assert page.by_id("ranking-all").find_all("table")


def _judgement(triplet, method, opponent, ask, choice, error=None, judge=JUDGE):
    return {"triplet_id": triplet, "method": method, "config_hash": "x", "opponent": opponent,
            "opponent_config_hash": "y", "b_prime_hash": None, "opponent_b_prime_hash": None, "seed": 0,
            "judge_id": judge, "ask": ask, "shown_first": method if ask == 1 else opponent, "prompt": "p", "raw": "r",
            "choice": None if error else choice, "consistent": None, "error": error}


def _pair(triplet, method, opponent, first, second, error=None):
    rows = [_judgement(triplet, method, opponent, 1, first), _judgement(triplet, method, opponent, 2, second, error)]
    if not error:
        for r in rows:
            r["consistent"] = first == second
    return rows


def test_cell_verdicts_give_each_b_prime_its_record_and_its_joint_verdict():
    rows = gallery()
    judgements = [*_pair("t1", "copy_b", "difference_inversion", "difference_inversion", "difference_inversion"),
                  *_pair("t1", "copy_b", "instruct_pix2pix", "tie", "tie"),
                  *_pair("t1", "difference_inversion", "instruct_pix2pix", "instruct_pix2pix", "difference_inversion"),
                  *_pair("t2", "copy_b", "difference_inversion", "copy_b", "copy_b")]  # t2 is unusable: not shown
    verdicts = cell_verdicts(rows, judgements)
    assert verdicts == {("t1", "copy_b"): "✗ wins 0/2",  # a loss and a tie
                        ("t1", "difference_inversion"): "✗ wins 1/1",  # the inconsistent pair is no vote
                        ("t1", "instruct_pix2pix"): "✓ wins 0/1"}
    failed = _pair("t1", "copy_b", "difference_inversion", "copy_b", None, error="no choice")
    assert cell_verdicts(rows, failed)[("t1", "copy_b")] == "✗ no consistent pair"
    assert cell_verdicts(rows, []) == {("t1", m): "✓" if m in PRIVILEGED else "✗" for m in HASH}
    rows[0].scores = {}
    assert cell_verdicts(rows, []) == {}


def test_headline_and_direction_of_cost_metrics():
    assert HEADLINE_METRICS == {"judge_joint", "judge_target", "judge_keep", "clip_direction", "dinov2_direction",
                                "gt_psnr", "seconds_per_task", "peak_memory_mb"}
    assert {"seconds_per_task", "peak_memory_mb", "gt_pixel_mse"} <= LOWER_IS_BETTER


def test_the_template_ships_with_the_package():
    assert (resources.files("evaluation.presentation") / "templates" / "report.html.j2").is_file()
