"""Jobs, schedules and sensors: a run over every dataset partition, weekly, off until turned on; and,
always on, the release of runs whose process died (orchestration.runs)."""

from __future__ import annotations

import dagster as dg

from orchestration.partitions import dataset_partitions

# Every asset of the code location for one partition (the DI steps and the leaderboard refresh
# included); the UI's backfill runs many.
analogy_job = dg.define_asset_job("analogy_job", selection=dg.AssetSelection.all(),
                                  description="triplets → DI steps → generations → metrics → report, leaderboard")


@dg.schedule(job=analogy_job, cron_schedule="0 3 * * 0", default_status=dg.DefaultScheduleStatus.STOPPED)
def all_datasets_weekly(context: dg.ScheduleEvaluationContext):
    """One run per dataset partition, Sundays 03:00 (turn on in the UI or with `dagster schedule start`)."""
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    for key in dataset_partitions.get_partition_keys():
        yield dg.RunRequest(run_key=f"{key}-{stamp}", partition_key=key)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Marks the runs of this host whose process died (kill -9, out of memory, a reboot) as "
                       "failed and frees their pool slots, so no dead run keeps the `gpu` pool from later runs")
def release_dead_runs(context: dg.SensorEvaluationContext):
    from orchestration.runs import release_dead_runs as release

    released = release(context.instance)
    return dg.SkipReason("; ".join(released) if released else "no run to release")


SCHEDULES = [all_datasets_weekly]
SENSORS = [release_dead_runs]
JOBS = [analogy_job]
