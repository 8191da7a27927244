"""Asset checks fail loudly on blank outputs and on NaN/inf tensors."""

from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
import torch
from PIL import Image

from evaluation.presentation.schemas import TABLES
from ops.cache import key_digest
from ops.deltas import Deltas
from ops.registry import METHODS, register
from orchestration.cache import DiskCache
from orchestration.checks import cached_tensors_finite_check
from orchestration.materialize import materialize_partition
from orchestration.partitions import dataset_partitions
from orchestration.resources import AnalogyStorage


@dataclass(frozen=True)
class Empty:
    pass


def test_blank_generations_fail_the_image_check(tmp_path):
    register("test_grey_fill", lambda models, a, a_prime, b, config, **_: Image.new("RGB", b.size, (128, 128, 128)),
             Empty)
    try:
        result = materialize_partition("toy", str(tmp_path), methods=["test_grey_fill"])
    finally:
        METHODS.pop("test_grey_fill")
    assert result.success  # the run completes; the check is what fails
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["b_prime_images_valid"].passed
    assert checks["b_prime_images_valid"].severity == dg.AssetCheckSeverity.ERROR
    assert "constant" in checks["b_prime_images_valid"].metadata["first_problems"].value
    assert checks["generations_complete"].passed and checks["metrics_finite_and_complete"].passed


def test_tensor_check_finds_nan(tmp_path):
    TABLES["test_tensors"] = pa.schema([("digest", pa.string())])

    @dg.asset(partitions_def=dataset_partitions)
    def test_tensors(context: dg.AssetExecutionContext, storage: AnalogyStorage) -> None:
        store = storage.store()
        cache, digests = DiskCache(store), []
        for i, bad in enumerate((torch.ones(3), torch.tensor([1.0, float("nan"), 0.0]))):
            cache("clip_deltas", (i,), lambda bad=bad: Deltas(torch.ones(3), bad, torch.ones(3)))
            digests.append(key_digest("clip_deltas", (i,)))
        store.write_table("test_tensors", context.partition_key, [{"digest": d} for d in digests + ["absent"]])

    try:
        check = cached_tensors_finite_check(test_tensors, "test_tensors", "digest", "clip_deltas")
        result = dg.materialize([test_tensors, check], partition_key="toy",
                                resources={"storage": AnalogyStorage(home=str(tmp_path))})
    finally:
        TABLES.pop("test_tensors")
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["problems"].value == 2
    assert "text has 1 NaN/inf" in evaluation.metadata["first_problems"].value
    assert "cache entry missing" in evaluation.metadata["first_problems"].value
