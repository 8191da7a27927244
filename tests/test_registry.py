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
    other = ctx.with_seed(2)
    assert other.seed == 2 and other.cached("k", lambda: 0) == 41
