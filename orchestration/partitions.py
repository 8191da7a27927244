"""Partitions = the configured datasets (shards of the large ones), read once
from datasets.yaml when the code location loads (see evaluation.datasets)."""

from __future__ import annotations

import dagster as dg

from evaluation.datasets import load_specs, partition_keys

DATASETS = load_specs()
dataset_partitions = dg.StaticPartitionsDefinition(partition_keys(DATASETS))
