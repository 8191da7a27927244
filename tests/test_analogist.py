"""Analogist's parts on a tiny real-format inpainter built from configs: the grid, the attention edits
(self-attention cloning on the logits, cross-attention masking on the probabilities), that they are
removed after the call, the loader's messages, and the method end to end."""

import dataclasses

import pytest
import torch
from makers import write_tiny_inpainter

from models import loaders
from models.context import ModelContext
from models.profiles import PROFILES, get_profile
from models.toy.world import make_triplets
from ops import analogist as an


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory, pipe):
    folder = write_tiny_inpainter(tmp_path_factory.mktemp("tiny-inpainter"), pipe)
    return dataclasses.replace(get_profile("toy"), name="tiny-inpainter", inpainter=str(folder))


@pytest.fixture(scope="module")
def inpainter(tiny_profile):
    return loaders.load_inpainter(tiny_profile, "cpu")


@pytest.fixture(scope="module")
def triplet():
    return make_triplets(5, 4)[1]


def test_the_grid_puts_each_image_in_its_cell_and_b_in_the_b_prime_cell(triplet):
    images = triplet.images()
    grid = an.make_grid(images["a"], images["a_prime"], images["b"], cell=32, padding=2)
    assert grid.size == (64, 64)
    inner = 32 - 3  # the cell less 1.5 · padding
    for image, (x, y) in ((images["a"], (2, 2)), (images["a_prime"], (33, 2)), (images["b"], (2, 33))):
        assert grid.crop((x, y, x + inner, y + inner)).tobytes() == image.resize((inner, inner)).tobytes()
    assert set(grid.crop((33, 33, 33 + inner, 33 + inner)).getdata()) == {(0, 0, 0)}  # B′ starts black
    assert grid.getpixel((0, 0)) == (255, 255, 255)  # the padding is white
    pasted = an.paste_b(grid)
    assert pasted.crop((32, 32, 64, 64)).tobytes() == grid.crop((0, 32, 32, 64)).tobytes()
    assert pasted.crop((0, 0, 64, 32)).tobytes() == grid.crop((0, 0, 64, 32)).tobytes()
    mask = an.b_prime_mask(64)
    assert mask.getpixel((48, 48)) == 255 and mask.getpixel((31, 48)) == 0 and mask.getpixel((48, 31)) == 0


def test_quadrants_cover_the_map_once_in_row_major_order():
    q = an.quadrants(16)  # a 4×4 map
    assert q["A"].tolist() == [0, 1, 4, 5] and q["A'"].tolist() == [2, 3, 6, 7]
    assert q["B"].tolist() == [8, 9, 12, 13] and q["B'"].tolist() == [10, 11, 14, 15]
    with pytest.raises(ValueError, match="square attention maps of even side"):
        an.quadrants(12)


def test_blocks_are_counted_in_forward_order(inpainter):
    blocks = an.transformer_blocks(inpainter.unet)
    assert len(blocks) == 7
    assert [b.split(".")[0] for b in blocks] == ["down_blocks"] * 2 + ["mid_block"] + ["up_blocks"] * 4


def test_sac_clones_the_logits_and_cam_zeroes_the_text_attention_on_a_captured_call(inpainter):
    unet = inpainter.unet
    config = an.AnalogistConfig(sac_start_layer=0, sac_end_layer=7, cam_start_layer=0, cam_end_layer=7)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 16, 16, generator=g)
    text = torch.randn(2, 32, unet.config.cross_attention_dim, generator=g)
    with an.attention_edits(unet, config, capture=True) as installed:
        unet(x, 500, text)
    edited = [p for p in installed.values() if isinstance(p, an.AnalogistAttnProcessor)]
    assert len(edited) == 14  # self and cross attention of all 7 blocks
    for processor in edited:
        sim, probs = processor.last["sim"], processor.last["probs"]
        q = an.quadrants(sim.shape[1])
        if processor.last["is_cross"]:
            assert torch.all(probs[:, torch.cat([q["A"], q["A'"], q["B"]])] == 0)
            assert torch.allclose(probs[:, q["B'"]].sum(-1), torch.ones(()))
        else:
            s = config.scale_sac
            assert torch.equal(sim[:, q["A'"][:, None], q["B'"][None, :]], sim[:, q["A"][:, None], q["B"][None, :]] * s)
            assert torch.equal(sim[:, q["B'"][:, None], q["A'"][None, :]], sim[:, q["B"][:, None], q["A"][None, :]] * s)
            assert not torch.equal(sim[:, q["A"][:, None], q["B"][None, :]], sim[:, q["A'"][:, None], q["B"][None, :]])


def test_edits_outside_the_layer_range_or_switched_off_install_nothing(inpainter):
    unet = inpainter.unet
    off = an.analogist_processors(unet, an.AnalogistConfig(sac=False, cam=False))
    assert not any(isinstance(p, an.AnalogistAttnProcessor) for p in off.values())
    only_mid = an.analogist_processors(unet, an.AnalogistConfig(sac_start_layer=2, sac_end_layer=3, cam=False))
    assert [k for k, p in only_mid.items() if isinstance(p, an.AnalogistAttnProcessor)] == [
        "mid_block.attentions.0.transformer_blocks.0.attn1.processor"]


def test_the_pipeline_is_unchanged_after_the_method(tiny_profile, inpainter, triplet, monkeypatch):
    monkeypatch.setitem(PROFILES, tiny_profile.name, tiny_profile)
    unet = inpainter.unet
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(1, 9, 16, 16, generator=g), torch.randn(1, 32, unet.config.cross_attention_dim, generator=g)
    before_types = {k: type(p) for k, p in unet.attn_processors.items()}
    with torch.no_grad():
        before = unet(x, 300, text).sample
    images = triplet.images()
    out = an.analogist(ModelContext(tiny_profile.name, "cpu"), images["a"], images["a_prime"], images["b"],
                       an.AnalogistConfig(num_steps=3, sac_start_layer=0, cam_start_layer=0), seed=0)
    assert out.size == images["b"].size and out.mode == "RGB"
    assert {k: type(p) for k, p in unet.attn_processors.items()} == before_types
    with torch.no_grad():
        assert torch.equal(unet(x, 300, text).sample, before)  # bit for bit: nothing left on the pipeline


def test_the_edits_change_the_result_and_the_seed_fixes_it(tiny_profile, triplet, monkeypatch):
    monkeypatch.setitem(PROFILES, tiny_profile.name, tiny_profile)
    models, images = ModelContext(tiny_profile.name, "cpu"), triplet.images()
    run = lambda **kw: an.analogist(models, images["a"], images["a_prime"], images["b"],  # noqa: E731
                                    an.AnalogistConfig(num_steps=3, **kw), seed=0).tobytes()
    full = run(sac_start_layer=0, cam_start_layer=0)
    assert run(sac_start_layer=0, cam_start_layer=0) == full
    assert run(sac=False, cam_start_layer=0) != full
    assert run(cam=False, sac_start_layer=0) != full


def test_the_toy_prompter_puts_a_prime_s_new_words_into_b_s_caption(triplet):
    from models.toy.world import caption

    class Captions:  # the captioner's interface, reading the scenes the triplet was rendered from
        model_id = "scenes"

        def caption(self, images):
            return [captions[im.tobytes()] for im in images]

    images = triplet.images()
    captions = {images[k].tobytes(): caption(getattr(triplet, k)) for k in ("a", "a_prime", "b")}
    models = dataclasses.make_dataclass("M", [("captioner", object), ("prompter", object), ("weights_key", str)])(
        Captions(), None, "scenes")
    from ops.cache import Cache

    assert an.prompt_for(models, images["a"], images["a_prime"], images["b"], Cache()) == caption(triplet.b_prime_gt)


def test_the_marked_grid_is_the_grid_with_the_official_letters_and_arrows(triplet):
    images = triplet.images()
    plain = an.make_grid(images["a"], images["a_prime"], images["b"], cell=256, padding=2)
    marked = an.marked_grid(images["a"], images["a_prime"], images["b"], cell=256, padding=2)
    assert marked.size == plain.size == (512, 512)
    for x, y in ((2, 2), (257, 2), (2, 257), (257, 257)):  # a 36-px black mark with white letters at each corner
        square = marked.crop((x, y, x + 37, y + 37))
        colours = set(square.getdata())
        assert (0, 0, 0) in colours and (255, 255, 255) in colours, (x, y)
        assert len(colours) > 2  # the letters are anti-aliased text, not a blank square
    for y in (128, 384):  # a red arrow across each row's boundary, tip at the right
        assert marked.getpixel((256, y)) == (230, 0, 0) and marked.getpixel((280, y)) == (230, 0, 0)
        assert marked.getpixel((284, y)) != (230, 0, 0) and marked.getpixel((200, y)) != (230, 0, 0)
    changed = [i for i, (p, q) in enumerate(zip(plain.getdata(), marked.getdata())) if p != q]
    assert 4 * 20 < len(changed) < 4 * 37 * 37 + 2 * 60 * 12  # only the marks and the arrows


def test_a_vlm_prompter_writes_the_prompt_from_the_marked_grid(tmp_path, tiny_profile, triplet, monkeypatch):
    """A real profile's prompter: a tiny Qwen2-VL from a config (it says "red," at every step) reads the marked
    grid with the official instruction; its first comma-separated prompt drives the inpainter, the answer is
    cached by the images, and the method runs end to end with it."""
    from makers import write_tiny_vlm

    from ops.cache import Cache
    from ops.registry import resolve_specs, run_method

    vlm_folder = write_tiny_vlm(tmp_path / "vlm", "red,")
    profile = dataclasses.replace(tiny_profile, name="tiny-prompted", prompter=str(vlm_folder))
    monkeypatch.setitem(PROFILES, profile.name, profile)
    models, images, cache = ModelContext(profile.name, "cpu"), triplet.images(), Cache()
    vlm = models.prompter
    assert loaders.load_vlm(str(vlm_folder), "cpu", "the judge VLM") is vlm  # one load, judge and prompter
    grid = an.marked_grid(images["a"], images["a_prime"], images["b"], 32, 2)
    text = vlm.processor.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": an.PROMPTER_INSTRUCTION}]}], add_generation_prompt=True,
        tokenize=False)
    assert text.count("<|vision_start|>") == 1 and an.PROMPTER_INSTRUCTION in text
    assert vlm.ask([grid], an.PROMPTER_INSTRUCTION, 3) == "red, red, red,"
    assert an.prompt_for(models, images["a"], images["a_prime"], images["b"], cache) == "red"
    assert an.prompt_for(models, images["a"], images["a_prime"], images["b"], cache) == "red"
    assert cache.stats["analogist_prompt"] == {"computed": 1, "reused": 1}
    (run,) = resolve_specs(["analogist[num_steps=2]"], profile)
    out = run_method(run, models, images["a"], images["a_prime"], images["b"], seed=0)
    assert out.size == images["b"].size
    assert an.parse_prompts(" a red circle , a red square,, ") == ["a red circle", "a red square"]
    with pytest.raises(ValueError, match="prompter gave no prompt"):
        an.parse_prompts(" , ")


def test_bad_settings_and_a_missing_inpainter_fail_with_clear_messages(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="prompter_max_tokens must be ≥ 1"):
        an.AnalogistConfig(prompter_max_tokens=0)
    with pytest.raises(ValueError, match="padding must be an even number"):
        an.AnalogistConfig(padding=3)
    with pytest.raises(ValueError, match="sac_start_layer..sac_end_layer"):
        an.AnalogistConfig(sac_start_layer=5, sac_end_layer=2)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    loaders.load_inpainter.cache_clear()
    fetch = "hf download stable-diffusion-v1-5/stable-diffusion-inpainting"
    with pytest.raises(loaders.ModelMissingError, match=fetch):
        loaders.load_inpainter(get_profile("sd15"), "cpu")
    with pytest.raises(ValueError, match="no inpainter"):
        loaders.load_inpainter(get_profile("toy-textured"), "cpu")
    toy = dataclasses.replace(get_profile("toy"), inpainter=str(tmp_path / "nothing"))
    with pytest.raises(loaders.ModelMissingError, match="python -m models.toy.train"):
        loaders.load_inpainter(toy, "cpu")
    loaders.load_inpainter.cache_clear()
    fetch = "Analogist's prompter.*hf download Qwen/Qwen2.5-VL-7B-Instruct"
    with pytest.raises(loaders.ModelMissingError, match=fetch):
        loaders.load_prompter(get_profile("sd15"), "cpu")
    assert loaders.load_prompter(get_profile("toy"), "cpu") is None


def test_the_processor_without_edits_is_diffusers_attention(inpainter):
    """The processor's own logits → softmax → values path equals the UNet's default attention (up to float
    rounding: diffusers' default is fused scaled-dot-product attention)."""
    unet = inpainter.unet
    g = torch.Generator().manual_seed(2)
    x, text = torch.randn(2, 9, 16, 16, generator=g), torch.randn(2, 32, unet.config.cross_attention_dim, generator=g)
    saved = dict(unet.attn_processors)
    with torch.no_grad():
        want = unet(x, 700, text).sample
        unet.set_attn_processor({k: an.AnalogistAttnProcessor(False, False, 1.3) for k in saved})
        try:
            got = unet(x, 700, text).sample
        finally:
            unet.set_attn_processor(saved)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_analogist_and_its_ablations_are_registered_and_run_on_a_tiny_real_format_model(tiny_profile, triplet,
                                                                                      monkeypatch):
    from ops.registry import resolve_specs, run_method

    monkeypatch.setitem(PROFILES, tiny_profile.name, tiny_profile)
    models, images = ModelContext(tiny_profile.name, "cpu"), triplet.images()
    runs = resolve_specs(["analogist[num_steps=2]", "analogist_no_sac[num_steps=2]", "analogist_no_cam[num_steps=2]"],
                         tiny_profile)
    assert [(r.config.sac, r.config.cam) for r in runs] == [(True, True), (False, True), (True, False)]
    for run in runs:
        out = run_method(run, models, images["a"], images["a_prime"], images["b"], seed=0,
                         change_map=torch.ones(8, 8))
        assert out.size == images["b"].size


def test_the_toy_inpainter_fills_a_masked_cell_with_the_scene_its_caption_names():
    """The committed toy inpainter through `StableDiffusionInpaintPipeline`: the bottom-right cell of a grid
    of fresh renders masked, inpainted from that cell's caption, read by the judge (toy check's section)."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    from evaluation.scoring.toy_check import inpainter_scores

    toy = get_profile("toy")
    pipe = loaders.load_inpainter(toy, "cpu")
    assert isinstance(pipe, StableDiffusionInpaintPipeline) and isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.unet.config.in_channels == 9 and an.native_size(pipe) == 64
    grid = (lambda a, a_prime, b: an.make_grid(a, a_prime, b, 32, 2), an.b_prime_box(64, 2, "inner"),
            an.b_prime_mask(64))
    scores = inpainter_scores(toy, *grid, n=16)
    # measured (n = 16): size 0.75, colour 0.75, shape 0.25, background 0.62, joint 0.19; chance is 1/2, 1/6,
    # 1/5, 1/3 and 1/180. The toy VAE caps it: B's own cell survives a round trip in the grid 50 % of the
    # time (MODEL_CARD "inpaint/")
    assert scores["colour"] >= 0.5 and scores["size"] >= 0.6 and scores["background"] >= 0.5, scores
    assert scores["joint"] >= 0.12, scores


def test_the_toy_inpainter_trains_on_grids_laid_out_as_analogist_lays_them():
    """models/toy/train.py builds its training grids in tensors (models never import ops): the same pixels
    as `ops.analogist.make_grid` with the B′ cell holding a fourth image, for the default padding."""
    import numpy as np
    from PIL import Image

    from models.toy import train

    assert (train.GRID_PADDING, 2 * train.GRID_CELL) == (an.AnalogistConfig().padding, 64)
    pool, scenes = train.grid_pool(1, 3)
    grids, picks = train.random_grids(pool, scenes, 2, torch.Generator().manual_seed(0), [0])
    to_pil = lambda x: Image.fromarray(((x + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())  # noqa: E731
    for grid, four in zip(grids, picks.tolist()):
        cells = [to_pil(pool[i]) for i in four]
        want = an.make_grid(*cells[:3], cell=train.GRID_CELL, padding=train.GRID_PADDING)
        inner, _, second = an.cell_layout(train.GRID_CELL, train.GRID_PADDING)
        want.paste(cells[3], (second, second))
        assert np.array_equal(np.asarray(to_pil(grid)), np.asarray(want))
