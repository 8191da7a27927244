"""DIFF-token training and B′ generation on the committed toy pipeline."""

import hashlib
from dataclasses import replace

import pytest
import torch

from models.toy.world import make_triplets
from ops.cache import config_hash
from ops.ddim import encode_latents
from ops.deltas import clip_deltas
from ops.diff_tokens import TrainingDivergedError, pair_parts, train_diff_tokens
from ops.difference_inversion import DIConfig, apply_difference
from ops.images import to_pixels
from ops.pez import pez_prompt
from ops.text import pipeline_specials, token_sequence


@pytest.fixture(scope="module")
def pair(pipe, joint_clip):
    t = make_triplets(11, 2)[1]  # a colour change
    im = t.images()
    z = encode_latents(pipe.vae, to_pixels([im["a"], im["a_prime"]], 32))
    p_a = pez_prompt(joint_clip, [im["a"]], steps=60, seed=0).token_ids
    p_ap = pez_prompt(joint_clip, [im["a_prime"]], steps=60, seed=1).token_ids
    from models.toy.world import caption

    delta = clip_deltas(joint_clip, im["a"], im["a_prime"], caption(t.a), caption(t.a_prime)).interpolated
    return {"z_a": z[:1], "z_ap": z[1:], "p_a": p_a, "p_ap": p_ap, "delta": delta, "images": im}


def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_only_diff_tokens_change_and_both_losses_fall(pipe, joint_clip, pair):
    def digests():
        models = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder, "clip": joint_clip.model}
        return {name: _digest(m) for name, m in models.items()}

    before = digests()
    out = train_diff_tokens(pipe, joint_clip, pair["z_a"], pair["z_ap"], pair["p_a"], pair["p_ap"], pair["delta"],
                            DIConfig(steps=120).training, seed=0)
    assert before == digests()  # every model parameter bit-identical
    assert out.tokens.shape == (5, pipe.text_encoder.config.hidden_size)
    assert out.tokens.abs().sum() > 0  # started from zero and moved
    assert not out.tokens.requires_grad
    tc, clip = out.curve["tc"], out.curve["clip"]
    assert clip[-1] < 0.5 * clip[0]
    # Ltc is noisy (random t, ε each step): compare window means
    assert sum(tc[-40:]) / 40 < sum(tc[:40]) / 40


def pair_sequences(table, p_a, p_ap, tokens, sp, negation):
    """(embeds (2, L, D), ids (2, L)) of `before` and `after` (ops.diff_tokens.pair_parts)."""
    built = [token_sequence(table, parts, sp) for parts in pair_parts(p_a, p_ap, tokens, negation)]
    return torch.stack([e for e, _ in built]), torch.stack([i for _, i in built])


def test_before_sequence_carries_minus_d(pipe):
    table = pipe.text_encoder.get_input_embeddings().weight
    sp = pipeline_specials(pipe)
    tokens = torch.randn(5, table.shape[1])
    p_a, p_ap = torch.tensor([300, 301]), torch.tensor([302, 303, 304])
    embeds, ids = pair_sequences(table, p_a, p_ap, tokens, sp, "negate")
    assert torch.equal(embeds[0, 4:9], -tokens)  # before = [SOT, PEZ(A′) (3), −D̃, EOT]
    assert torch.equal(embeds[0, 1:4], table[p_ap])
    assert torch.equal(embeds[1, 3:8], tokens)  # after = [SOT, PEZ(A) (2), +D̃, EOT]
    assert ids[0, 9] == sp.eot and ids[1, 8] == sp.eot
    removed, _ = pair_sequences(table, p_a, p_ap, tokens, sp, "remove")
    assert torch.equal(removed[0, 4], table[sp.eot])  # D̃ absent from `before`


def test_same_seed_same_bytes_and_seed_matters(pipe, joint_clip, pair):
    args = (pipe, joint_clip, pair["z_a"], pair["z_ap"], pair["p_a"], pair["p_ap"], pair["delta"])
    one = train_diff_tokens(*args, DIConfig(steps=15).training, seed=3).tokens
    two = train_diff_tokens(*args, DIConfig(steps=15).training, seed=3).tokens
    three = train_diff_tokens(*args, DIConfig(steps=15).training, seed=4).tokens
    assert one.numpy().tobytes() == two.numpy().tobytes()
    assert not torch.equal(one, three)


def test_nan_in_training_is_a_clear_error(pipe, joint_clip, pair):
    bad = pair["z_a"].clone()
    bad[..., 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="step 0"):
        train_diff_tokens(pipe, joint_clip, bad, pair["z_ap"], pair["p_a"], pair["p_ap"], pair["delta"],
                          DIConfig(steps=5, clip_loss=False).training)


def test_config_switches_validate_and_hash():
    with pytest.raises(ValueError):
        DIConfig(init="ones")
    with pytest.raises(ValueError):
        DIConfig(delta="both")
    with pytest.raises(ValueError):
        DIConfig(inversion_steps=51)
    base = DIConfig()
    assert config_hash(base) == config_hash(DIConfig())
    assert config_hash(base) != config_hash(replace(base, init="random"))
    # D̃ depends on every setting but the generation ones
    assert base.training_hash() == replace(base, inversion_steps=5, guidance_scale=3.0).training_hash()
    assert base.training_hash() != replace(base, lambda_tc=1.0).training_hash()
    from ops.registry import get_method

    with pytest.raises(ValueError, match="no setting"):
        get_method("difference_inversion").config({"nonsense": 1})


def test_trainer_takes_its_settings_from_diconfig_without_importing_it():
    """ops.diff_tokens imports nothing from ops.difference_inversion, not even for type checking (no cycle);
    DIConfig.training carries the config's own values; the switches that lost are no settings any more."""
    import ast
    import inspect

    import ops.diff_tokens
    from ops.registry import get_method

    tree = ast.parse(inspect.getsource(ops.diff_tokens))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if "difference_inversion" in (m or "")]
    settings = DIConfig(n_tokens=3, lambda_tc=2.0, negation="remove", changed_tokens="drop", precision="bf16").training
    assert (settings.n_tokens, settings.lambda_tc, settings.negation, settings.changed_tokens, settings.precision) == (
        3, 2.0, "remove", "drop", "bf16")
    for gone in ("augment", "placement", "clip_context"):
        with pytest.raises(ValueError, match="no setting"):
            get_method("difference_inversion").config({gone: "x"})


def test_zero_tokens_and_zero_change_map_keep_b(pipe, joint_clip, pair):
    """A change map of zeros leaves B′ = B up to the VAE round trip, whatever D̃ says."""
    from ops.ddim import decode_latents
    from ops.images import to_pil

    b = pair["images"]["b"]
    p_b = pez_prompt(joint_clip, [b], steps=40, seed=2).token_ids
    tokens = torch.randn(5, pipe.text_encoder.config.hidden_size) * 3
    cfg = DIConfig(num_steps=20, inversion_steps=18)
    kept = apply_difference(pipe, b, p_b, tokens, cfg, change_map=torch.zeros(32, 32))
    round_trip = to_pil(decode_latents(pipe.vae, encode_latents(pipe.vae, to_pixels([b], 32))))[0]
    px = lambda im: to_pixels([im], 32)  # noqa: E731
    err_kept = (px(kept) - px(round_trip)).abs().mean().item()
    free = apply_difference(pipe, b, p_b, tokens, cfg)
    err_free = (px(free) - px(round_trip)).abs().mean().item()
    # the last DDIM step from t=1 adds a little error on top of the VAE; 0.02 in [−1, 1] is ~2.5 grey levels
    assert err_kept < 0.02
    assert err_free > 3 * err_kept


@pytest.fixture(scope="module")
def four_pairs(pipe, joint_clip):
    """Four (A, A′) pairs of different changes, captions as prompts (the toy profile's setting)."""
    from models.toy.world import caption
    from ops.diff_tokens import PairInputs

    out = []
    for i, t in enumerate(make_triplets(23, 4)):
        im = t.images()
        z = encode_latents(pipe.vae, to_pixels([im["a"], im["a_prime"]], 32))
        ids = [pipe.tokenizer(caption(s), add_special_tokens=False).input_ids for s in (t.a, t.a_prime)]
        delta = clip_deltas(joint_clip, im["a"], im["a_prime"], caption(t.a), caption(t.a_prime)).interpolated
        out.append(PairInputs(z[:1], z[1:], ids[0], ids[1], delta, seed=100 + i))
    return out


BATCH_CONFIG = DIConfig(steps=40, lambda_tc=100.0, init="random")  # random init: the seed matters from step 0


def test_pairs_trained_together_equal_each_trained_alone(pipe, joint_clip, four_pairs):
    """k = 4 pairs in one batch give each pair the D̃ it gets alone (same seeds) to float rounding.

    Tolerance: batched float32 kernels sum in another order, ≈1e-7 relative per operation; AdamW
    normalises every step, so 40 steps leave a few 1e-6 (measured: max 6e-5 absolute, 5e-6 relative
    at k = 8, 30 steps). 1e-4 relative is 100× the rounding seen and 1,000× below what a different
    seed changes (asserted below), so it tells "the same D̃" from "another D̃"."""
    from ops.diff_tokens import train_diff_tokens_batch

    together = train_diff_tokens_batch(pipe, joint_clip, four_pairs, BATCH_CONFIG.training)
    for p, batched in zip(four_pairs, together, strict=True):
        alone = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a_prime, p.delta,
                                  BATCH_CONFIG.training, seed=p.seed)
        relative = ((batched.tokens - alone.tokens).norm() / alone.tokens.norm()).item()
        assert relative < 1e-4, relative
        assert batched.curve["total"] == pytest.approx(alone.curve["total"], rel=1e-4)
    other_seed = train_diff_tokens(pipe, joint_clip, four_pairs[0].z_a, four_pairs[0].z_a_prime,
                                   four_pairs[0].prompt_a, four_pairs[0].prompt_a_prime, four_pairs[0].delta,
                                   BATCH_CONFIG.training, seed=999)
    assert ((other_seed.tokens - together[0].tokens).norm() / together[0].tokens.norm()).item() > 0.1


def test_a_pair_that_diverges_fails_alone_in_its_batch(pipe, joint_clip, four_pairs):
    from dataclasses import replace as with_fields

    from ops.diff_tokens import train_diff_tokens_batch

    pairs = list(four_pairs[:3])
    pairs[1] = with_fields(pairs[1], delta=torch.full_like(pairs[1].delta, float("nan")))
    config = replace(BATCH_CONFIG, steps=5)
    results = train_diff_tokens_batch(pipe, joint_clip, pairs, config.training)
    assert isinstance(results[1], TrainingDivergedError) and "step 0" in str(results[1])
    for i in (0, 2):
        alone = train_diff_tokens(pipe, joint_clip, pairs[i].z_a, pairs[i].z_a_prime, pairs[i].prompt_a,
                                  pairs[i].prompt_a_prime, pairs[i].delta, config.training,
                                  seed=pairs[i].seed)
        assert torch.isfinite(results[i].tokens).all()
        assert ((results[i].tokens - alone.tokens).norm() / alone.tokens.norm()).item() < 1e-4


def test_bf16_autocast_trains_fp32_tokens_close_to_fp32(pipe, joint_clip, four_pairs):
    """precision='bf16' (for GPUs) runs the frozen models under autocast; D̃ and AdamW stay fp32
    and land near the fp32 D̃ (bf16 keeps 8 bits of mantissa: measured 3.8 % apart after 20 steps, where another
    seed is > 10 % away)."""
    p = four_pairs[0]
    config = replace(BATCH_CONFIG, steps=20)
    fp32 = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a_prime, p.delta,
                             config.training, seed=p.seed)
    bf16 = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a_prime, p.delta,
                             replace(config, precision="bf16").training, seed=p.seed)
    assert bf16.tokens.dtype == torch.float32 and torch.isfinite(bf16.tokens).all()
    assert not torch.equal(bf16.tokens, fp32.tokens)  # autocast did run in bf16
    gap = ((bf16.tokens - fp32.tokens).norm() / fp32.tokens.norm()).item()
    assert gap < 0.1
    with pytest.raises(ValueError, match="precision"):
        DIConfig(precision="fp16")


def test_a_group_of_pairs_trains_one_shared_d(pipe, joint_clip, four_pairs):
    """groups=[0, 0, 1, 1]: each group's pairs get one D̃ (identical tensors), a D̃ trained on both
    pairs' losses (not either pair's own), and a group diverging stops only itself."""
    from dataclasses import replace as with_fields

    from ops.diff_tokens import train_diff_tokens_batch

    config = replace(BATCH_CONFIG, steps=10)
    grouped = train_diff_tokens_batch(pipe, joint_clip, four_pairs, config.training, groups=[0, 0, 1, 1])
    assert torch.equal(grouped[0].tokens, grouped[1].tokens) and torch.equal(grouped[2].tokens, grouped[3].tokens)
    assert not torch.allclose(grouped[0].tokens, grouped[2].tokens)
    alone = train_diff_tokens_batch(pipe, joint_clip, four_pairs, config.training)
    for i in range(4):
        assert ((grouped[i].tokens - alone[i].tokens).norm() / alone[i].tokens.norm()).item() > 1e-3
    bad = list(four_pairs)
    bad[3] = with_fields(bad[3], delta=torch.full_like(bad[3].delta, float("nan")))
    results = train_diff_tokens_batch(pipe, joint_clip, bad, replace(config, steps=3).training,
                                      groups=[0, 0, 1, 1])
    assert all(isinstance(r, TrainingDivergedError) for r in results[2:])
    assert all(torch.isfinite(r.tokens).all() for r in results[:2])
    with pytest.raises(ValueError, match="group labels"):
        train_diff_tokens_batch(pipe, joint_clip, four_pairs, config.training, groups=[0, 1])


def test_changed_tokens_drop_leaves_the_replaced_words_out_of_every_prompt(pipe, joint_clip, four_pairs):
    """changed_tokens='drop': D̃ trains beside A's prompt without the tokens A′'s lacks and A′'s without those
    A's lacks (exactly the 'keep' training on those shortened prompts), and B's prompt beside D̃ loses the
    removed tokens; where B's prompt has none of them B′ is the 'keep' B′ bit for bit."""
    from ops.diff_tokens import changed_tokens, training_prompts

    p = four_pairs[0]
    removed, added = changed_tokens(p.prompt_a, p.prompt_a_prime)
    assert removed and added and not removed & added
    short_a, short_ap = training_prompts(p.prompt_a, p.prompt_a_prime, "drop")
    assert short_a == [i for i in p.prompt_a if i not in removed] and not set(short_a) & removed
    assert short_ap == [i for i in p.prompt_a_prime if i not in added] and short_a == short_ap  # one word changed
    assert training_prompts(p.prompt_a, p.prompt_a_prime, "keep") == (p.prompt_a, p.prompt_a_prime)

    config = replace(BATCH_CONFIG, steps=5)
    dropped = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a_prime, p.delta,
                                replace(config, changed_tokens="drop").training, seed=p.seed).tokens
    by_hand = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, short_a, short_ap, p.delta, config.training,
                                seed=p.seed).tokens
    kept = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a_prime, p.delta,
                             config.training, seed=p.seed).tokens
    assert torch.equal(dropped, by_hand)
    assert not torch.allclose(dropped, kept)
    assert config.training_hash() != replace(config, changed_tokens="drop").training_hash()
    with pytest.raises(ValueError, match="changed_tokens"):
        DIConfig(changed_tokens="mask")

    b = make_triplets(23, 4)[0].images()["b"]
    p_b = list(p.prompt_a)  # B's prompt holds the removed word, as a toy B does (it shares A's value)
    gen = DIConfig(num_steps=10, inversion_steps=9)
    drop_gen = replace(gen, changed_tokens="drop")
    plain = apply_difference(pipe, b, p_b, dropped, gen, removed=removed)
    assert apply_difference(pipe, b, p_b, dropped, drop_gen, removed=added) == plain  # nothing of B's to drop
    assert apply_difference(pipe, b, p_b, dropped, drop_gen, removed=removed) != plain


def test_difference_inversion_drops_what_a_prime_replaced_from_b_prompt():
    """The method wires the removed tokens through: its B′ is apply_difference's with the tokens of A's
    caption that A′'s lacks, which a toy B's caption holds (B shares A's value of the changed attribute)."""
    from models.context import ModelContext
    from ops import difference_inversion as di
    from ops.cache import Cache
    from ops.diff_tokens import changed_tokens

    models = ModelContext("toy", device="cpu")
    im = make_triplets(5, 1)[0].images()
    config = DIConfig(prompt_source="caption", lambda_tc=100.0, steps=3, num_steps=10, inversion_steps=9,
                      changed_tokens="drop")
    cache = Cache()
    out = di.difference_inversion(models, im["a"], im["a_prime"], im["b"], config, seed=0, cache=cache)
    p_a, p_ap, p_b = (di.prompt(models, im[k], config, 0, cache).token_ids for k in ("a", "a_prime", "b"))
    removed = changed_tokens(p_a, p_ap)[0]
    assert removed and removed <= set(p_b)
    target = di.deltas(models, im["a"], im["a_prime"], config, cache).pick(config.delta)
    tokens = di.diff_tokens(models, im["a"], im["a_prime"], p_a, p_ap, target, config, 0, cache).tokens
    assert cache.stats["diff_tokens"]["computed"] == 1  # the method's own D̃, from the cache
    assert out == di.apply_difference(models.pipeline, im["b"], p_b, tokens, config, removed=removed)
    assert out != di.apply_difference(models.pipeline, im["b"], p_b, tokens, config)


def test_init_added_starts_d_at_the_rows_of_the_words_a_prime_adds(pipe, joint_clip, four_pairs):
    """init='added': D̃ starts as the token rows of what A′'s prompt adds to A's, in A′'s order, the other rows
    zero (with lr 0 it stays there); a pair whose prompts do not differ starts at zero."""
    from ops.diff_tokens import added_ids
    from ops.text import DiffusionText

    assert added_ids([5, 6, 7], [5, 9, 8, 9]) == [9, 8] and added_ids([5, 6], [6, 5]) == []
    p = four_pairs[0]
    ids = added_ids(p.prompt_a, p.prompt_a_prime)
    assert 0 < len(ids) < BATCH_CONFIG.n_tokens
    frozen = replace(BATCH_CONFIG, steps=1, lr=0.0, init="added")
    start = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a_prime, p.delta,
                              frozen.training, seed=p.seed).tokens
    rows = DiffusionText(pipe).rows(torch.tensor(ids)).to(start)
    assert torch.equal(start[:len(ids)], rows) and not start[len(ids):].any()
    same = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a, p.delta, frozen.training,
                             seed=p.seed).tokens
    assert not same.any()
    trained = train_diff_tokens(pipe, joint_clip, p.z_a, p.z_a_prime, p.prompt_a, p.prompt_a_prime, p.delta,
                                replace(frozen, steps=5, lr=BATCH_CONFIG.lr).training, seed=p.seed).tokens
    assert not torch.allclose(trained, start)
    assert frozen.training_hash() != replace(frozen, init="zero").training_hash()
