"""The Dagster code location: `dagster dev -w workspace.yaml`, `dg check defs`."""

from __future__ import annotations

import dagster as dg

from orchestration.assets import ASSETS
from orchestration.checks import CHECKS
from orchestration.resources import default_resources
from orchestration.schedules import JOBS, SCHEDULES

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=JOBS, schedules=SCHEDULES,
                      resources=default_resources())
