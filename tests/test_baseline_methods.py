"""The registered baselines produce B′ for a toy triplet; DIA's st sweep re-estimates nothing."""

import pytest

from models.context import ModelContext
from models.toy.world import make_triplets
from ops.cache import Cache
from ops.registry import resolve_specs, run_method

FAST = {
    "sdedit": "sdedit[num_steps=10]",
    "differential_diffusion": "differential_diffusion[num_steps=10]",
    "dia_captions": "dia_captions[num_steps=10]",
    "dia": "dia[cond_steps=5;lbfgs_iterations=1;lbfgs_max_iter=2]",
    "instructpix2pix": "instructpix2pix[num_steps=10]",
    "visii": "visii[steps=20;pez_steps=20;num_steps=5]",
}


@pytest.fixture(scope="module")
def triplet():
    return make_triplets(0, 1)[0].images()


@pytest.fixture(scope="module")
def models():
    return ModelContext(device="cpu")


@pytest.mark.parametrize("name", sorted(FAST))
def test_baseline_produces_b_prime(name, triplet, models):
    run = resolve_specs([FAST[name]], models.profile)[0]
    out = run_method(run, models, triplet["a"], triplet["a_prime"], triplet["b"])
    assert out.size == triplet["b"].size and out.mode == "RGB"


def test_dia_strength_sweep_reuses_the_estimates(triplet, models):
    cache = Cache()
    runs = resolve_specs([FAST["dia"][:-1] + f";strength={st}]" for st in (0.0, 1.5)], models.profile)
    outs = [run_method(run, models, triplet["a"], triplet["a_prime"], triplet["b"], cache=cache) for run in runs]
    assert cache.computed["dia_conditioning"] == 3 and cache.computed["dia_noise"] == 1  # A, A′, B once; εB once
    assert cache.reused["dia_conditioning"] == 3 and cache.reused["dia_noise"] == 1
    assert outs[0].tobytes() != outs[1].tobytes()


def test_dia_estimates_do_not_depend_on_the_triplet(models):
    """One image's estimate is the same in every triplet: two triplets sharing B share εB."""
    t1, t2 = (make_triplets(s, 1)[0].images() for s in (0, 1))
    run = resolve_specs([FAST["dia"]], models.profile)[0]
    cache = Cache()
    run_method(run, models, t1["a"], t1["a_prime"], t1["b"], cache=cache)
    run_method(run, models, t2["a"], t2["a_prime"], t1["b"], cache=cache)
    assert cache.computed["dia_noise"] == 1 and cache.reused["dia_noise"] == 1
