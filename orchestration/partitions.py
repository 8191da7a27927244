"""Partitions = the configured datasets (shards of the large ones), read from the datasets
file (see evaluation.ingestion.datasets) when they are first needed — when Dagster loads the code
location's partitions or a run resolves its partition — never when a module is imported."""

from __future__ import annotations

from functools import cache, cached_property

import dagster as dg

from evaluation.ingestion.datasets import load_specs, partition_keys
from evaluation.ingestion.sources import DatasetSpec


@cache
def datasets() -> dict[str, DatasetSpec]:
    """The configured datasets, read once per process."""
    return load_specs()


class DatasetPartitions(dg.StaticPartitionsDefinition):
    """A static partitions definition whose keys are computed on first use, not at import."""

    def __init__(self):  # the keys are a lazy property below, not an argument
        pass

    @cached_property
    def _partition_keys(self) -> list[str]:
        keys = partition_keys(datasets())
        return dg.StaticPartitionsDefinition(keys).get_partition_keys()  # Dagster's own key validation

    def __str__(self) -> str:  # Dagster formats it while defining assets: no read here either
        return "the configured datasets and their shards"

    def __repr__(self) -> str:
        return "DatasetPartitions()"


dataset_partitions = DatasetPartitions()
