"""The Dagster code location: `dagster dev -w workspace.yaml`, `dg check defs`.

New assets and checks go into ALL_ASSETS / ALL_CHECKS (the job, the schedule,
`analogy demo` and the pipeline tests all take them from here).
"""

from __future__ import annotations

import dagster as dg

from orchestration.assets import ASSETS
from orchestration.checks import CHECKS, tensor_blobs_finite_check
from orchestration.di_assets import DI_ASSETS, clip_deltas, diff_tokens
from orchestration.resources import default_resources
from orchestration.schedules import JOBS, SCHEDULES

ALL_ASSETS = [*ASSETS, *DI_ASSETS]
ALL_CHECKS = [*CHECKS, tensor_blobs_finite_check(diff_tokens, "diff_tokens", "tokens_hash"),
              tensor_blobs_finite_check(clip_deltas, "clip_deltas", "deltas_hash")]

defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=JOBS, schedules=SCHEDULES,
                      resources=default_resources())
