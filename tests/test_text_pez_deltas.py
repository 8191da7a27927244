"""PEZ, CLIP deltas, slerp and token sequences on the committed toy joint CLIP."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.convert import check_conversion, open_clip_text_to_hf
from models.toy.world import caption, make_triplets
from ops.deltas import added_words, clip_deltas, slerp
from ops.pez import allowed_token_mask, pez_prompt
from ops.text import Specials, clip_specials, encode_diffusion_text, token_sequence


def test_slerp_endpoints_norm_and_lerp_fallback():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(64, generator=g), dim=0)
    b = F.normalize(torch.randn(64, generator=g), dim=0)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    for alpha in (0.2, 0.5, 0.8):
        mid = slerp(a, b, alpha)
        assert mid.norm().item() == pytest.approx(1.0, abs=1e-5)  # stays on the sphere
        # the angle splits in the ratio α : 1 − α
        theta = torch.acos(a @ b)
        assert torch.acos((a @ mid).clamp(-1, 1)).item() == pytest.approx(alpha * theta.item(), abs=1e-4)
    near = F.normalize(a + 1e-6 * b, dim=0)
    assert torch.isfinite(slerp(a, near, 0.5)).all()


def test_token_sequence_layout_and_negation():
    table = torch.randn(20, 8)
    sp = Specials(sot=18, eot=19, pad=0, length=12)
    rows = torch.randn(3, 8)
    embeds, ids = token_sequence(table, [torch.tensor([5, 6]), -rows], sp)
    assert ids.tolist() == [18, 5, 6, 0, 0, 0, 19] + [0] * 5
    assert torch.equal(embeds[1:3], table[[5, 6]])
    assert torch.equal(embeds[3:6], -rows)  # the part is placed as given: −D̃ really is −D̃
    assert torch.equal(embeds[6], table[19]) and torch.equal(embeds[7:], table[0].expand(5, -1))
    with pytest.raises(ValueError, match="context length"):
        token_sequence(table, [torch.randn(11, 8)], sp)


def test_diffusion_text_encoder_on_embeddings_matches_ids(pipe):
    ids = pipe.tokenizer("a large red star on a grey background", padding="max_length",
                         max_length=pipe.tokenizer.model_max_length, return_tensors="pt").input_ids
    table = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        direct = pipe.text_encoder(input_ids=ids).last_hidden_state
        via_embeds = encode_diffusion_text(pipe.text_encoder, table[ids[0]], ids[0])
    assert torch.allclose(direct, via_embeds, atol=1e-6)


def test_sd_text_encoder_is_the_joint_clip_tower_minus_its_last_block(joint_clip, pipe):
    table = pipe.text_encoder.get_input_embeddings().weight
    assert torch.allclose(table, joint_clip.token_table, atol=1e-3)  # shared V (stored in float16)
    converted = open_clip_text_to_hf(joint_clip.model, drop_last_layers=1)
    assert converted.config.num_hidden_layers == pipe.text_encoder.config.num_hidden_layers
    ids = joint_clip.tokenize(["a small blue cross on a black background"])
    assert check_conversion(joint_clip.model, converted, ids) < 1e-5


def test_clip_tower_on_embeddings_matches_encode_text(joint_clip):
    ids = joint_clip.tokenize(["a small blue cross on a black background"])
    direct = joint_clip.encode_texts(["a small blue cross on a black background"])
    via = joint_clip.encode_token_embeddings(joint_clip.token_table[ids], ids)
    assert torch.allclose(direct, via, atol=1e-5)


def test_pez_rises_above_random_start_and_never_picks_special_tokens(joint_clip):
    image = make_triplets(3, 1)[0].images()["a"]
    prompt = pez_prompt(joint_clip, [image], n_tokens=10, steps=150, seed=0)
    assert len(prompt.token_ids) == 10
    special = {joint_clip.sot_id, joint_clip.eot_id, joint_clip.pad_id}
    assert not special & set(prompt.token_ids)
    assert prompt.cosine > prompt.curve[0] + 0.3
    assert prompt.cosine == pytest.approx(max(prompt.curve))
    # the stored ids reproduce the stored cosine: no text round trip
    table, sp = joint_clip.token_table, clip_specials(joint_clip)
    embeds, ids = token_sequence(table, [torch.tensor(prompt.token_ids)], sp)
    text = joint_clip.encode_token_embeddings(embeds[None], ids[None])
    cos = F.cosine_similarity(text, joint_clip.encode_images([image])).item()
    assert cos == pytest.approx(prompt.cosine, abs=1e-4)
    mask = allowed_token_mask(joint_clip)
    assert mask.sum().item() == joint_clip.token_table.shape[0] - 3


def test_pez_is_seeded(joint_clip):
    image = make_triplets(4, 1)[0].images()["b"]
    one = pez_prompt(joint_clip, [image], steps=40, seed=7)
    two = pez_prompt(joint_clip, [image], steps=40, seed=7)
    assert one.token_ids == two.token_ids and one.curve == two.curve


def test_clip_deltas_point_from_a_to_a_prime(joint_clip):
    t = make_triplets(0, 4)[1]  # a colour change
    im = t.images()
    d = clip_deltas(joint_clip, im["a"], im["a_prime"], caption(t.a), caption(t.a_prime), alpha=0.8)
    for v in (d.image, d.text, d.interpolated):
        assert v.norm().item() == pytest.approx(1.0, abs=1e-5)
    # the interpolated delta sits between image and text delta, closer to the text (α = 0.8)
    angle = lambda x, y: math.acos(F.cosine_similarity(x, y, dim=0).clamp(-1, 1).item())  # noqa: E731
    assert angle(d.interpolated, d.text) < angle(d.interpolated, d.image)
    # the same difference on another pair (B → B′gt) points the same way
    other = make_triplets(0, 4)[1]
    d_b = clip_deltas(joint_clip, im["b"], im["b_prime_gt"], caption(other.b), caption(other.b_prime_gt))
    assert F.cosine_similarity(d.interpolated, d_b.interpolated, dim=0) > 0.5
    with pytest.raises(ValueError, match="identical"):
        clip_deltas(joint_clip, im["a"], im["a"], caption(t.a), caption(t.a))


def test_added_words_are_what_a_prime_caption_adds():
    assert added_words("a small red star on a grey background", "a large red star on a grey background") == "large"
    assert added_words("a red star on a grey background", "a red star on a black background") == "black"
    assert added_words("A Red, small STAR", "a blue star, small") == "blue"
    assert added_words("a small red star", "a red star") == ""  # a change that only removes words


def test_clip_deltas_text_from_added_words(joint_clip):
    """text_source='added': Dtxt is the encoding of the words A′'s caption adds, alone; the image
    delta is unchanged; a caption that adds nothing falls back to the captions' difference."""
    t = next(t for t in make_triplets(0, 8) if t.changed == "colour")
    im, cap_a, cap_a_prime = t.images(), caption(t.a), caption(t.a_prime)
    plain = clip_deltas(joint_clip, im["a"], im["a_prime"], cap_a, cap_a_prime)
    added = clip_deltas(joint_clip, im["a"], im["a_prime"], cap_a, cap_a_prime, text_source="added")
    word = F.normalize(joint_clip.encode_texts([t.a_prime.colour])[0], dim=0)
    assert torch.allclose(added.text, word, atol=1e-6)
    assert torch.allclose(added.image, plain.image)
    assert not torch.allclose(added.text, plain.text, atol=1e-3)
    assert F.cosine_similarity(added.interpolated, word, dim=0) > F.cosine_similarity(plain.interpolated, word, dim=0)
    shorter = cap_a_prime.replace(f"{t.a_prime.colour} ", "")  # A′'s caption adds no word to A's
    fallback = clip_deltas(joint_clip, im["a"], im["a_prime"], cap_a, shorter, text_source="added")
    assert torch.allclose(fallback.text, clip_deltas(joint_clip, im["a"], im["a_prime"], cap_a, shorter).text)
    with pytest.raises(ValueError, match="text_source"):
        clip_deltas(joint_clip, im["a"], im["a_prime"], cap_a, cap_a_prime, text_source="words")


def test_pez_prompts_batched_equal_each_alone(joint_clip):
    """Four images' prompts optimised in one text-tower batch are each the prompt it gets alone
    (same seed): the same token ids, and its best cosine to float rounding."""
    from ops.pez import pez_prompts

    images = [t.images()["a"] for t in make_triplets(31, 4)]
    together = pez_prompts(joint_clip, [[im] for im in images], steps=40, seeds=[3, 4, 5, 6])
    for image, seed, batched in zip(images, [3, 4, 5, 6], together, strict=True):
        alone = pez_prompt(joint_clip, [image], steps=40, seed=seed)
        assert batched.token_ids == alone.token_ids
        assert batched.cosine == pytest.approx(alone.cosine, abs=1e-5)
        assert batched.curve == pytest.approx(alone.curve, abs=1e-5)
    assert len({tuple(p.token_ids) for p in together}) == 4  # four images, four prompts
