"""The report's images (evaluation.presentation.report): the scores plot fits the UI's dialog, the B′ grid shows every
row it can, names in full and ′ in a real font."""

import warnings
from io import BytesIO

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw

from evaluation.presentation.report import _font, _wrap_label, sample_grid, scores_plot

LONG = ["difference_inversion[lambda_tc=100]", "instruct_pix2pix[guidance=7.5,steps=50]", "sdedit", "visii",
        "analogist", "dia", "copy_b"]


def _size(png: bytes) -> tuple[int, int]:
    return Image.open(BytesIO(png)).size


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def test_scores_plot_fits_the_dialog_with_many_families_and_long_names():
    methods = LONG + ["mean_rgb"]
    metrics = ["judge_target", "judge_keep", "judge_joint", "clip_direction", "dino_direction", "clip_gt_cosine",
               "gt_pixel_mse", "gt_psnr", "seconds_per_task", "peak_memory_mb"]  # 6 families and more
    estimates = []
    for i, method in enumerate(methods):
        for j, metric in enumerate(metrics):
            mean = 0.1 + 0.05 * ((i + j) % 9)
            no_interval = (i + j) % 4 == 0  # below the minimum n: a point with no bar
            estimates.append({"method": method, "metric": metric, "n": 3 if no_interval else 20, "mean": mean,
                              "ci95_low": None if no_interval else mean - 0.05,
                              "ci95_high": None if no_interval else mean + 0.05,
                              "interval": "none" if no_interval else "bootstrap"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tight_layout that cannot fit the names warns
        png = scores_plot(estimates)
    width, height = _size(png)
    assert width <= 1100 and height < 2 * width
    assert _size(scores_plot(estimates[:1]))[0] <= 400  # one panel: one column
    assert _size(scores_plot([]))[0] <= 400  # nothing to plot still makes an image


def _triplets_and_images(n: int, methods: list[str], gt: bool = True):
    images: dict[str, Image.Image] = {}
    triplets, generations = [], []
    for i in range(n):
        t = {"triplet_id": f"colour-{i:03d}-{7 * i:04d}", "error": None}
        for k, role in enumerate(("a", "a_prime", "b", "b_prime_gt")):
            if role == "b_prime_gt" and not gt:
                continue
            t[f"{role}_hash"] = f"{role}-{i}"
            images[f"{role}-{i}"] = Image.new("RGB", (16, 16), (30 + 9 * i, 17 + k, 251 - i))
        triplets.append(t)
        for j, method in enumerate(methods):
            images[h := f"{method}-{i}"] = Image.new("RGB", (24, 24), (200 - 5 * i, 40 + j, 3))
            generations.append({"triplet_id": t["triplet_id"], "method": method, "b_prime_hash": h})
    return triplets, generations, images.__getitem__


def _a_rows(png: bytes, n: int) -> int:
    """How many triplets' A images the grid shows (each A has its own colour)."""
    pixels = _pixels(png).reshape(-1, 3)
    colours = {tuple(c) for c in pixels[::7]}
    return sum((30 + 9 * i, 17, 251 - i) in colours for i in range(n))


def test_sample_grid_shows_every_triplet_up_to_max_rows():
    triplets, generations, load = _triplets_and_images(20, LONG)
    two = sample_grid(triplets[:2], generations, load)
    twelve = sample_grid(triplets[:12], generations, load)
    (w2, h2), (w12, h12) = _size(two), _size(twelve)
    assert w2 == w12 <= 1400
    assert 10 * 72 <= h12 - h2 <= 10 * (72 + 12)  # about ten rows of 72 px more
    assert (_a_rows(two, 20), _a_rows(twelve, 20)) == (2, 12)
    capped = sample_grid(triplets, generations, load, max_rows=16)
    assert _a_rows(capped, 20) == 16
    assert _size(capped)[1] > _size(sample_grid(triplets[:16], generations, load))[1]  # "… and 4 more" line
    broken = [t | {"error": "unreadable"} for t in triplets[:3]] + triplets[3:5]
    assert _a_rows(sample_grid(broken, generations, load), 20) == 2  # unusable triplets are left out


def test_sample_grid_columns_and_widths():
    methods = LONG + ["m8_with_a_fairly_long_name", "m9", "m10[x=1]"]
    triplets, generations, load = _triplets_and_images(2, methods)
    with_gt = sample_grid(triplets, generations, load)
    assert _size(with_gt)[0] <= 1400  # 10 methods at cell 72
    no_gt, _, load_no_gt = _triplets_and_images(2, methods, gt=False)
    without = sample_grid(no_gt, generations, load_no_gt)
    assert _size(with_gt)[0] - _size(without)[0] >= 72  # the B′gt column only where there is one
    assert (200, 40, 3) in {tuple(c) for c in _pixels(with_gt).reshape(-1, 3)}  # a method's B′


def test_method_names_are_wrapped_never_cut():
    font = _font(10)
    for name in LONG + ["x" * 60, "a_b", ""]:
        lines = _wrap_label(name, font, 70)
        assert "".join(lines) == name
        assert all(font.getlength(line) <= 70 for line in lines)
    assert _wrap_label("difference_inversion[lambda_tc=100]", font, 70)[0] == "difference_"


def test_the_prime_renders_in_the_grid_font():
    from matplotlib import ft2font

    font = _font(12)
    assert ft2font.FT2Font(font.path).get_char_index(ord("′")) != 0  # the font has the glyph, no missing box
    assert font.getmask("′").getbbox() is not None

    def label(text: str) -> Image.Image:
        image = Image.new("L", (40, 20), 255)
        ImageDraw.Draw(image).text((2, 2), text, font=font, fill=0)
        return image

    assert ImageChops.difference(label("A′"), label("A")).getbbox() is not None


def test_a_verdict_is_written_under_its_cell():
    triplets, generations, load = _triplets_and_images(3, LONG)
    plain = sample_grid(triplets, generations, load, verdicts={})
    target = (triplets[1]["triplet_id"], "sdedit")
    marked = sample_grid(triplets, generations, load, verdicts={target: "✓ 3/3"})
    assert _size(plain) == _size(marked)
    diff = ImageChops.difference(Image.open(BytesIO(plain)), Image.open(BytesIO(marked))).getbbox()
    assert diff is not None
    # the cell of sdedit's B′ on the second triplet: its colour (200 − 5, 40 + index of sdedit, 3)
    ys, xs = np.nonzero(np.all(_pixels(marked) == (195, 40 + LONG.index("sdedit"), 3), axis=-1))
    left, top, right, bottom = xs.min(), ys.min(), xs.max(), ys.max()
    assert (right - left + 1, bottom - top + 1) == (72, 72)
    assert left <= diff[0] and diff[2] <= right + 1  # within the cell's column
    assert bottom < diff[1] and diff[3] <= bottom + 1 + 24  # on the strip just under it
    assert sample_grid(triplets, generations, load, verdicts={target: "wins 2/3"}) != marked


@pytest.mark.parametrize("cell", [48, 96])
def test_sample_grid_scales_with_the_cell(cell):
    triplets, generations, load = _triplets_and_images(2, LONG)
    png = sample_grid(triplets, generations, load, cell=cell)
    assert _size(png)[0] < len(LONG + ["A", "A′", "B", "B′gt", "label"]) * (cell + 10)
