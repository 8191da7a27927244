"""The method registry."""

import pytest
from makers import gradient, scene_image

from ops.registry import METHODS, MethodContext, get_method, register, run_method


def test_no_edit_returns_b():
    b = scene_image("red", "star")
    out = run_method("no_edit", MethodContext(), gradient(), gradient(), b)
    assert out.tobytes() == b.tobytes() and out is not b


def test_config_hash_names_method_and_config():
    method = get_method("no_edit")
    assert method.config_hash({}) == method.config_hash({})
    assert method.config_hash({}) != method.config_hash({"x": 1})


def test_unknown_method_and_option_are_errors():
    with pytest.raises(KeyError, match="unknown method"):
        get_method("nope")
    with pytest.raises(ValueError, match="no option"):
        get_method("no_edit").resolve({"strength": 0.5})


def test_register_as_decorator_and_lazy_target():
    try:
        @register("test_flip", defaults={"axis": 0})
        def flip(ctx, a, a_prime, b, axis):
            return b.transpose(axis)

        register("test_lazy", "ops.registry:no_edit")
        assert run_method("test_flip", MethodContext(), gradient(), gradient(), gradient()).size == (40, 24)
        assert run_method("test_lazy", MethodContext(), gradient(), gradient(), gradient()).size == (40, 24)
        with pytest.raises(ValueError, match="twice"):
            register("test_lazy", "ops.registry:no_edit")
    finally:
        METHODS.pop("test_flip", None)
        METHODS.pop("test_lazy", None)


def test_contexts_share_the_memo_across_seeds():
    ctx = MethodContext(seed=1)
    assert ctx.cached("k", lambda: 41) == 41
    other = ctx.for_triplet(seed=2)
    assert other.seed == 2 and other.cached("k", lambda: 0) == 41


def test_change_map_is_checked_with_a_clear_error():
    import numpy as np
    import torch

    from ops.registry import check_change_map

    b = scene_image("red", "star")
    assert check_change_map(torch.zeros(1, 8, 8), b).shape == (8, 8)
    assert check_change_map(np.ones((32, 32)), b).max() == 1
    for bad, message in ((torch.full((8, 8), float("nan")), "finite"), (torch.full((8, 8), 2.0), r"\[0, 1\]"),
                         (torch.zeros(8, 16), "aspect"), (torch.zeros(2, 8, 8), "one")):
        with pytest.raises(ValueError, match=message):
            run_method("no_edit", MethodContext(), b, b, b, change_map=bad)


def test_the_instruction_reaches_text_guided_baselines():
    """SDEdit / Differential Diffusion edit toward the triplet's instruction where it has one."""
    from ops.baseline_methods import _text

    ctx = MethodContext()
    with_instruction = ctx.for_triplet(seed=3, instruction="make the red star blue")
    assert with_instruction.memo is ctx.memo and with_instruction.seed == 3
    a_prime = scene_image("blue", "star")
    assert _text(with_instruction, "instruction", a_prime) == "make the red star blue"
    assert "blue" in _text(ctx, "instruction", a_prime)  # no instruction: A′'s caption
    assert "blue" in _text(with_instruction, "caption", a_prime)


# Pixel tolerance (mean |Δ| in [−1, 1]) on top of the VAE round trip. DI: its inversion is
# deterministic, only the last DDIM step acts (0.02, as in test_diff_tokens). SDEdit and Differential
# Diffusion re-inject the original noised with *fresh* noise at t = 1 before their last step (exactly
# what m = 0 must give, test_differential_diffusion); 0.0204 measured, bound 0.03 (≈ 4 grey levels).
@pytest.mark.parametrize("name, fast, tolerance", [
    ("sdedit", {"num_steps": 20}, 0.03),
    ("differential_diffusion", {"num_steps": 20}, 0.03),
    ("difference_inversion", {"pez_steps": 20, "steps": 5, "num_steps": 20, "inversion_steps": 18}, 0.02),
])
def test_a_zero_change_map_keeps_b_in_every_mode(name, fast, tolerance):
    """`run_method(..., change_map=0)` leaves B′ = B up to the VAE round trip (SPEC §3)."""
    import torch

    from ops.ddim import decode_latents, encode_latents
    from ops.images import to_pil, to_pixels

    a, a_prime, b = scene_image("red", "circle"), scene_image("blue", "circle"), scene_image("red", "square")
    ctx = MethodContext(device="cpu")
    px = lambda im: to_pixels([im], 32)  # noqa: E731
    round_trip = to_pil(decode_latents(ctx.pipeline.vae, encode_latents(ctx.pipeline.vae, px(b))))[0]
    kept = run_method(name, ctx, a, a_prime, b, change_map=torch.zeros(32, 32), **fast)
    free = run_method(name, ctx, a, a_prime, b, **fast)
    err_kept = (px(kept) - px(round_trip)).abs().mean().item()
    err_free = (px(free) - px(round_trip)).abs().mean().item()
    assert err_kept < tolerance
    assert err_free > 3 * err_kept
