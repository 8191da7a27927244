"""The generation loop: per-triplet errors, a missing model reported once per method."""

import logging
from dataclasses import dataclass

from makers import scene_image

from models.context import ModelContext
from models.loaders import ModelMissingError
from ops.cache import Cache
from ops.registry import METHODS, register, resolve_specs
from orchestration.generate import generate_rows
from orchestration.storage import Store


@dataclass(frozen=True)
class Empty:
    pass


def triplets(store: Store, n: int) -> list[dict]:
    h = store.put_png(scene_image("red", "circle"))
    rows = [{"triplet_id": f"t{i}", "a_hash": h, "a_prime_hash": h, "b_hash": h, "instruction": f"edit {i}",
             "error": None} for i in range(n)]
    return rows + [{"triplet_id": "bad", "a_hash": None, "a_prime_hash": None, "b_hash": None, "instruction": None,
                    "error": "x"}]


def test_errors_stay_per_triplet_and_a_missing_model_is_tried_once(tmp_path):
    store, calls = Store(tmp_path), []

    def flaky(models, a, a_prime, b, config, **_):
        calls.append("flaky")
        if len(calls) == 2:
            raise ValueError("bad luck")
        return b

    def needs_weights(models, a, a_prime, b, config, **_):
        calls.append("needs_weights")
        raise ModelMissingError("toy diffusion pipeline not found")

    register("test_flaky", flaky, Empty)
    register("test_needs_weights", needs_weights, Empty)
    try:
        runs = resolve_specs(["test_flaky", "test_needs_weights"])
        rows, counts = generate_rows(triplets(store, 3), runs, store, ModelContext(), Cache(), 7,
                                     logging.getLogger("test"))
    finally:
        METHODS.pop("test_flaky")
        METHODS.pop("test_needs_weights")
    assert [(r["method"], r["triplet_id"], bool(r["error"])) for r in rows] == [
        ("test_flaky", "t0", False), ("test_flaky", "t1", True), ("test_flaky", "t2", False),
        ("test_needs_weights", "t0", True), ("test_needs_weights", "t1", True), ("test_needs_weights", "t2", True)]
    assert calls.count("needs_weights") == 1 and "not found" in rows[-1]["error"]
    assert {r["seed"] for r in rows} == {7}  # the user's seed; methods derive theirs from content
    assert counts == {"computed": 6, "reused": 0, "kept": 0}
    assert len({r["inputs_key"] for r in rows}) == 3  # the instruction is part of what B′ depends on


def test_a_b_prime_is_reused_only_under_the_same_model_versions(tmp_path):
    """A re-run reuses the B′ of the same inputs, config, seed and models; other weights (another
    `weights_key`: a retrained toy model, a new hub snapshot) compute it again."""
    store, calls = Store(tmp_path), []

    def counted(models, a, a_prime, b, config, **_):
        calls.append(1)
        return b

    register("test_counted", counted, Empty)
    try:
        runs = resolve_specs(["test_counted"])
        log = logging.getLogger("test")
        first, _ = generate_rows(triplets(store, 2), runs, store, ModelContext(), Cache(), 0, log)
        assert {r["models"] for r in first} == {ModelContext().weights_key}
        _, again = generate_rows(triplets(store, 2), runs, store, ModelContext(), Cache(), 0, log, previous=first)
        other = ModelContext()
        other.weights_key = "toy|folder#retrained"  # what a changed weight file gives (tests/test_loaders.py)
        rows, retrained = generate_rows(triplets(store, 2), runs, store, other, Cache(), 0, log, previous=first)
    finally:
        METHODS.pop("test_counted")
    assert again == {"computed": 0, "reused": 2, "kept": 0}
    assert retrained == {"computed": 2, "reused": 0, "kept": 0} and len(calls) == 4
    assert {r["models"] for r in rows} == {"toy|folder#retrained"}
