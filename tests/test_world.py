"""The toy world's generator: captions, training composites and the textured variant."""

import random

import numpy as np
import torch

from models.toy.train import composites, cut_masks
from models.toy.world import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    BACKGROUNDS,
    caption,
    corrected_caption,
    parse_caption,
    phrase,
    render,
    render_textured,
    training_scenes,
    varied_caption,
)


def test_varied_captions_name_the_scene_in_any_order():
    rng = random.Random(0)
    scene = training_scenes()[17]
    texts = [varied_caption(scene, rng) for _ in range(64)]
    values = {scene.size, scene.colour, scene.shape, scene.background}
    for text in texts:  # nothing dropped: every value is there
        assert values <= set(text.replace(",", " ").split()), text
    first_values = {next(w for w in text.replace(",", " ").split() if w in values) for text in texts}
    assert len(first_values) == len(ATTRIBUTE_NAMES)  # every attribute comes first sometimes
    dropped = [varied_caption(scene, rng, drop=0.9) for _ in range(64)]
    assert all(values & set(t.replace(",", " ").split()) for t in dropped)  # one attribute always stays
    assert min(len(t.split(",")) for t in dropped) == 1 < max(len(t.split(",")) for t in dropped)
    assert parse_caption(caption(scene)) == scene


def test_corrected_captions_end_with_the_scenes_value_after_another():
    """The last phrase is the scene's own value of one attribute; before it the caption names the
    same scene with that attribute set to another value (or left out)."""
    rng = random.Random(1)
    scene = training_scenes()[40]
    seen = set()
    for _ in range(200):
        text = corrected_caption(scene, rng, drop=0.25)
        base, last = text.rsplit(", ", 1)
        (name,) = [n for n in ATTRIBUTE_NAMES if phrase(scene, n) == last]
        seen.add(name)
        words = set(base.replace(",", " ").split())
        assert getattr(scene, name) not in words, text  # the other value came first (or none)
        others = words & set(ATTRIBUTES[name])
        assert len(others) <= 1 and all(v != getattr(scene, name) for v in others)
        for n in ATTRIBUTE_NAMES:
            if n != name and n != "background":
                assert not (words & set(ATTRIBUTES[n])) - {getattr(scene, n)}, text  # the rest is the scene's
    assert seen == set(ATTRIBUTE_NAMES)


def test_composites_cut_two_renders_at_one_column_or_row():
    masks = cut_masks(200, 8, 1, 8, torch.Generator().manual_seed(0)).squeeze(1)
    assert ((masks == 0) | (masks == 1)).all()
    assert (masks[:, 0, 0] == 0).all() and (masks[:, -1, -1] == 1).all()  # the cut lies inside
    by_column = (masks == masks[:, :1, :]).all(dim=(1, 2))  # every row the same: a column cut
    by_row = (masks == masks[:, :, :1]).all(dim=(1, 2))
    assert (by_column ^ by_row).all() and 50 < by_column.sum() < 150
    assert (masks.diff(dim=-1) >= 0).all() and (masks.diff(dim=-2) >= 0).all()  # one step, 0 then 1
    dark, light = torch.full((3, 3, 32, 32), -1.0), torch.full((3, 3, 32, 32), 1.0)
    mixed = composites(torch.cat([dark, light]), 64, seed=1)
    assert ((mixed == -1) | (mixed == 1)).all()
    assert any(0.15 < (m == -1).float().mean() < 0.85 for m in mixed)


def test_textured_renders_keep_the_shape_and_put_content_in_every_column():
    rng = random.Random(4)
    columns_touched = np.zeros(32)
    for _ in range(24):
        scene, seed = rng.choice(training_scenes()), rng.randrange(2**31)
        plain = np.asarray(render(scene, seed), dtype=np.int16)
        textured = np.asarray(render_textured(scene, seed), dtype=np.int16)
        assert np.array_equal(textured, np.asarray(render_textured(scene, seed)))  # seeded
        on_shape = np.abs(plain - np.array(BACKGROUNDS[scene.background])).sum(-1) >= 40
        assert np.array_equal(textured[on_shape], plain[on_shape])  # the shape is untouched
        changed = np.abs(textured - plain).sum(-1) > 60  # a blob: at least 45 grey levels off
        assert 0.05 < changed.mean() < 0.6
        columns_touched += changed.any(axis=0)
    assert columns_touched.min() >= 6  # blobs land in every column, edges included
