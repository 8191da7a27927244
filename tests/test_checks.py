"""Asset checks fail loudly on blank outputs and on NaN/inf tensors."""

import dagster as dg
import pyarrow as pa
import torch
from PIL import Image

from evaluation.schemas import TABLES
from ops.registry import METHODS, register
from orchestration.checks import tensor_blobs_finite_check
from orchestration.materialize import materialize_partition
from orchestration.partitions import dataset_partitions
from orchestration.resources import AnalogyStorage


def test_blank_generations_fail_the_image_check(tmp_path):
    register("test_grey_fill", lambda ctx, a, a_prime, b: Image.new("RGB", b.size, (128, 128, 128)))
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
        digests = [store.put_tensors({"x": torch.ones(3)}), store.put_tensors({"x": torch.tensor([1.0, float("nan")])})]
        store.write_table("test_tensors", context.partition_key, [{"digest": d} for d in digests])

    try:
        check = tensor_blobs_finite_check(test_tensors, "test_tensors", "digest")
        result = dg.materialize([test_tensors, check], partition_key="toy",
                                resources={"storage": AnalogyStorage(home=str(tmp_path))})
    finally:
        TABLES.pop("test_tensors")
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["problems"].value == 1
    assert "1 NaN/inf" in evaluation.metadata["first_problems"].value
