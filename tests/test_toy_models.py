"""The committed toy models meet the toy-world bar (the figures of `analogy toy check`)."""

import pytest

from evaluation.scoring.toy_check import reconstruction_scores, t2i_scores, vae_scores
from ops.ddim import ddim_reconstruct, vae_round_trip


@pytest.fixture(scope="module")
def t2i(toy_profile):
    return t2i_scores(toy_profile)


def test_text_to_image_is_read_right_by_the_judge(t2i):
    seen = t2i["seen"]  # 144 captions, 50 DDIM steps, CFG 7.5
    assert seen["colour"] >= 0.95 and seen["shape"] >= 0.90 and seen["background"] >= 0.95, seen
    # held-out (colour, shape) pairs were never seen by the UNet: composition must still work
    assert t2i["held_out"]["all"] >= 0.80, t2i["held_out"]


def test_ddim_inversion_and_regeneration_reproduce_the_input(toy_profile):
    rec = reconstruction_scores(toy_profile, ddim_reconstruct)  # 50 steps, CFG 1, 64 renders
    assert min(rec[a] for a in ("size", "colour", "shape", "background")) >= 0.95, rec


def test_vae_round_trip_keeps_the_attributes(toy_profile):
    scores = vae_scores(toy_profile, vae_round_trip)
    # colour, size and background survive exactly; shape loses a little (95.7 % measured, see MODEL_CARD)
    trip = scores["vae_round_trip"]
    assert trip["colour"] >= 0.99 and trip["background"] >= 0.99 and trip["size"] >= 0.97 and trip["shape"] >= 0.94


def test_composition_check_reads_the_appended_word(toy_profile):
    """`analogy toy check`'s composition section: prompts that contradict themselves at the end,
    scored per attribute; the whole target scene can only show where the appended value does."""
    from evaluation.scoring.toy_check import composition_scores

    scores = composition_scores(toy_profile, n=8, steps=20)
    assert set(scores) == {"size", "colour", "shape", "background", "all"}
    for name, s in scores.items():
        assert 0 <= s["joint"] <= s["appended_wins"] <= 1, (name, s)


def test_the_instruction_editor_edits_and_keeps(toy_profile):
    """`analogy toy check`'s editor section, short (16 edits, 20 steps): the toy InstructPix2Pix editor
    changes the instructed attribute and keeps the rest far above chance (an editor that ignores its
    input image keeps all three other attributes ~5 % of the time; 0.08 measured on such a run). The
    committed editor measured 1.00 / 0.81 / 0.81 here; the bounds leave two edits of margin each."""
    from evaluation.scoring.toy_check import editor_scores

    scores = editor_scores(toy_profile, n=16, num_inference_steps=20)
    assert set(scores) == {"size", "colour", "shape", "background", "all", "held_out_joint"}
    assert scores["all"]["target"] >= 0.85 and scores["all"]["keep"] >= 0.65 and scores["all"]["joint"] >= 0.65, scores


def test_the_committed_toy_world_stays_small_and_stores_each_file_once():
    """≤ 60 MB on disk, links not followed: the editor and the inpainter link to the text-to-image
    pipeline's VAE, text encoder and tokenizer (models.toy.train.share_with_sd) instead of copying them."""
    from pathlib import Path

    weights = Path(__file__).resolve().parents[1] / "models" / "toy" / "weights"
    files = [p for p in weights.rglob("*") if p.is_file() and not any(q.is_symlink() for q in p.parents)]
    assert sum(p.stat().st_size for p in files) <= 60_000_000
    for pipeline in ("instruct", "inpaint"):
        for component in ("vae", "text_encoder", "tokenizer"):
            link = weights / pipeline / component
            assert link.is_symlink() and link.resolve() == (weights / "sd" / component).resolve(), link


def test_saving_a_candidate_pipeline_twice_leaves_the_shipped_one_untouched(tmp_path):
    """A training stage saves its checkpoint into the same folder again and again; after the first save
    the shared components are links to weights/sd, and a second save must not write through them."""
    from models.loaders import load_pipeline
    from models.profiles import get_profile
    from models.toy.train import WEIGHTS, save_pipeline

    pipe = load_pipeline(get_profile("toy"))
    shipped = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (WEIGHTS / "sd").rglob("*") if p.is_file()}
    out = tmp_path / "candidate"
    for _ in range(2):
        save_pipeline(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, out)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in shipped} == shipped
    assert (out / "text_encoder").is_symlink() and (out / "unet" / "config.json").is_file()
