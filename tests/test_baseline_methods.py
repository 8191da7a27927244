"""The registered baselines produce B′ for a toy triplet; DIA's st sweep re-estimates nothing."""

import pytest

from models.toy.world import make_triplets
from ops.registry import MethodContext, get_method, run_method

FAST = {
    "sdedit": {"num_steps": 10},
    "differential_diffusion": {"num_steps": 10},
    "dia_captions": {"num_steps": 10},
    "dia": {"cond_steps": 5, "lbfgs_iterations": 1, "lbfgs_max_iter": 2},
}


@pytest.fixture(scope="module")
def triplet():
    return make_triplets(0, 1)[0].images()


@pytest.mark.parametrize("name", sorted(FAST))
def test_baseline_produces_b_prime(name, triplet):
    ctx = MethodContext(device="cpu")
    out = run_method(name, ctx, triplet["a"], triplet["a_prime"], triplet["b"], **FAST[name])
    assert out.size == triplet["b"].size and out.mode == "RGB"
    assert get_method(name).uses_gpu


def test_dia_strength_sweep_reuses_the_estimates(triplet):
    ctx = MethodContext(device="cpu")
    outs = [run_method("dia", ctx, triplet["a"], triplet["a_prime"], triplet["b"], **FAST["dia"], strength=st)
            for st in (0.0, 1.5)]
    kinds = [key[0] for key in ctx.memo]
    assert kinds.count("dia_cond") == 3 and kinds.count("dia_noise") == 1  # A, A′, B once; εB once
    assert outs[0].tobytes() != outs[1].tobytes()
