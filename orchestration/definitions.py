"""The Dagster code location: `dagster dev -w workspace.yaml`, `dg check defs`.

New assets go into ALL_ASSETS, new checks into orchestration/checks.py's CHECKS (the job,
the schedule, `analogy demo` and the pipeline tests all take them from here).
"""

from __future__ import annotations

import dagster as dg

from orchestration.assets import ASSETS
from orchestration.checks import CHECKS
from orchestration.di_assets import DI_ASSETS
from orchestration.executors import executor_def
from orchestration.judge_assets import JUDGE_ASSETS
from orchestration.resources import default_resources
from orchestration.schedules import JOBS, SCHEDULES, SENSORS
from orchestration.visii_assets import visii_instructions

ALL_ASSETS = [*ASSETS, *DI_ASSETS, visii_instructions, *JUDGE_ASSETS]
ALL_CHECKS = CHECKS

defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=JOBS, schedules=SCHEDULES, sensors=SENSORS,
                      resources=default_resources(), executor=executor_def())  # $ANALOGY_EXECUTOR
