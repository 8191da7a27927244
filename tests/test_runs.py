"""No pool slot outlives its run (orchestration.runs): a demo killed with SIGKILL while it holds the
`gpu` pool's slot does not stall the next demo of the same instance; a demo whose step waits for a
slot that a live run holds says which run holds it, and Ctrl-C or SIGTERM end that wait at once."""

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from orchestration.materialize import INSTANCE_CONFIG
from orchestration.runs import RunProcess, process_tags, release_dead_runs, step_processes

ROOT = Path(__file__).resolve().parents[1]
PARTITION = "toyshard.001"  # two triplets
DEMO_TIMEOUT = 300  # seconds for a whole demo of no_edit on a busy 2-core machine; a stalled one fails here
# A run that claims the `gpu` pool's slot in a step and keeps it: a live process with a run of its own.
HOLDER = """
import time
import dagster as dg
from orchestration.runs import process_tags

@dg.op(pool="gpu")
def hold_gpu_slot():
    time.sleep(600)

@dg.job
def hold():
    hold_gpu_slot()

hold.execute_in_process(instance=dg.DagsterInstance.get(), tags=process_tags())
"""


# The same run under the multiprocess executor (the UI's default): its step runs in a child process.
MULTIPROCESS_HOLDER = """
import time
import dagster as dg
from orchestration.runs import process_tags

@dg.op(pool="gpu")
def hold_gpu_slot():
    time.sleep(600)

@dg.job(executor_def=dg.multiprocess_executor)
def hold():
    hold_gpu_slot()

if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(dg.reconstructable(hold), instance, tags=process_tags())
"""


def _env(home: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # the demo picks its own instance
    return env | ({"DAGSTER_HOME": str(home / "dagster")} if home else {})


def _demo(home: Path, methods: str) -> list[str]:
    return [sys.executable, "-m", "orchestration.cli", "demo", "--partition", PARTITION, "--methods", methods,
            "--home", str(home), "--quiet"]


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def _gpu_holders(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    return [(s.run_id, s.step_key) for s in instance.event_log_storage.get_concurrency_info("gpu").claimed_slots]


def _wait_for_holder(home: Path, process: subprocess.Popen, step: str, timeout: float = 240) -> str:
    """The run id that holds the gpu slot in `step`, once it does."""
    deadline = time.time() + timeout
    # a run's own event file: the process has made the instance's tables (opening it sooner races that)
    while not [f for f in (home / "dagster" / "history" / "runs").glob("*.db") if f.name != "index.db"]:
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.5)
    instance = _instance(home)
    try:
        while True:
            held = [run_id for run_id, step_key in _gpu_holders(instance) if step_key == step]
            if held:
                return held[0]
            assert process.poll() is None and time.time() < deadline, process.communicate()
            time.sleep(0.2)
    finally:
        instance.dispose()


def test_a_demo_killed_during_generations_leaves_no_slot_behind(tmp_path):
    """SIGKILL a demo while its generations step holds the gpu slot: the next demo in the same home
    marks the dead run failed, frees its slot and finishes, instead of waiting forever."""
    killed = subprocess.Popen(_demo(tmp_path, "sdedit[num_steps=2000]"), cwd=ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dead_run = _wait_for_holder(tmp_path, killed, "generations")
        time.sleep(1)
    finally:
        killed.kill()
        killed.wait()
    instance = _instance(tmp_path)
    assert _gpu_holders(instance) == [(dead_run, "generations")]  # what used to stall every later run
    assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.STARTED
    instance.dispose()

    start = time.time()
    again = subprocess.run(_demo(tmp_path, "no_edit"), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=DEMO_TIMEOUT)
    assert again.returncode == 0, again.stderr[-3000:]
    released = [line for line in again.stdout.splitlines() if dead_run in line]
    assert released == [f"analogy demo: run {dead_run} (pid {killed.pid}) ended without finishing: marked "
                        "failed, its pool slots freed"], again.stdout
    instance = _instance(tmp_path)
    dead = instance.get_run_record_by_id(dead_run)
    assert dead.dagster_run.status == dg.DagsterRunStatus.FAILURE
    failure = instance.get_records_for_run(dead_run, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert f"pid {killed.pid}" in failure[-1].event_log_entry.dagster_event.message
    info = instance.event_log_storage.get_concurrency_info("gpu")
    assert not info.claimed_slots and not info.pending_steps
    (newer,) = [r for r in instance.get_runs() if r.run_id != dead_run]
    assert newer.status == dg.DagsterRunStatus.SUCCESS
    instance.dispose()
    print(f"second demo: {time.time() - start:.0f} s")


@pytest.fixture(scope="module")
def held_home(tmp_path_factory):
    """(home, holder process, holder run id): a live run of another process holds the gpu slot."""
    home = tmp_path_factory.mktemp("held")
    (home / "dagster").mkdir()
    shutil.copy(INSTANCE_CONFIG, home / "dagster" / "dagster.yaml")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, env=_env(home),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield home, holder, _wait_for_holder(home, holder, "hold_gpu_slot")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_waiting_demo_says_who_holds_the_slot_and_a_signal_ends_the_wait(held_home, signum):
    home, holder, holder_run = held_home
    demo = subprocess.Popen(_demo(home, "no_edit"), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout], daemon=True)
    reader.start()
    deadline = time.time() + 240
    while True:  # its first line, then the one that says what it waits for
        try:
            line = lines.get(timeout=max(0.0, deadline - time.time()))
        except queue.Empty:
            demo.kill()
            pytest.fail(f"no line on what the demo waits for after 240 s: {demo.communicate()}")
        if "wait" in line:
            break
    assert f"for the gpu pool's slot, held by run {holder_run} (pid {holder.pid}, step hold_gpu_slot) since " \
           in line, line
    time.sleep(1)  # still waiting: the holder is alive
    assert demo.poll() is None
    sent = time.time()
    demo.send_signal(signum)
    try:
        demo.wait(timeout=60)
    finally:
        demo.kill()  # a no-op once it has exited
    seconds = time.time() - sent
    err = demo.stderr.read()
    reader.join(timeout=10)
    out = "".join(lines.queue)
    assert seconds < 10, f"the wait went on for {seconds:.0f} s after the signal"
    assert demo.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("analogy demo: interrupted"), err
    assert "Traceback" not in out + err
    instance = _instance(home)
    (run,) = [r for r in instance.get_runs(filters=dg.RunsFilter(tags={"launched_by": "analogy demo"}))
              if r.run_id in lines[0]]
    assert run.status == dg.DagsterRunStatus.CANCELED
    info = instance.event_log_storage.get_concurrency_info("gpu")
    assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(holder_run, "hold_gpu_slot")]  # untouched
    assert {p.run_id for p in info.pending_steps} == {holder_run}  # the canceled run waits for nothing
    assert instance.get_run_by_id(holder_run).status == dg.DagsterRunStatus.STARTED
    instance.dispose()


def test_a_run_process_is_alive_only_while_that_very_process_runs():
    me = psutil.Process()
    host = process_tags()["analogy/host"]
    assert RunProcess(host, me.pid, started=me.create_time()).alive()
    assert not RunProcess(host, me.pid, started=me.create_time() + 60).alive()  # the pid, reused by a newer process
    assert not RunProcess(host, me.pid, started_by=me.create_time() - 60).alive()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not yet waited for
        time.sleep(0.05)
    assert not RunProcess(host, child.pid, started=psutil.Process(child.pid).create_time()).alive()
    child.wait()


def test_a_dead_run_launched_by_the_ui_is_released_and_a_live_one_kept(tmp_path):
    """A run of Dagster's DefaultRunLauncher has no tags of ours: its worker's pid comes from Dagster's
    "Started process for run" event, and its code server's address says the worker ran on this host."""
    from dagster._core.events import EngineEventData
    from dagster._core.storage.tags import GRPC_INFO_TAG

    shutil.copy(INSTANCE_CONFIG, tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))

    @dg.job
    def launched():
        pass

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("gpu")
    runs = {}
    for name, pid in (("dead", gone.pid), ("live", os.getpid()), ("remote", gone.pid)):
        host = "gpu-box-7" if name == "remote" else "localhost"
        run = instance.create_run_for_job(launched, status=dg.DagsterRunStatus.STARTED,
                                          tags={GRPC_INFO_TAG: json.dumps({"host": host, "port": 4266})})
        instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
        runs[name] = run.run_id
    assert storage.claim_concurrency_slot("gpu", runs["dead"], "generations").is_claimed

    released = release_dead_runs(instance)
    assert released == [f"run {runs['dead']} (pid {gone.pid}) ended without finishing: marked failed, its pool "
                        "slots freed"]
    assert instance.get_run_by_id(runs["dead"]).status == dg.DagsterRunStatus.FAILURE
    assert not storage.get_concurrency_info("gpu").claimed_slots
    # the live worker, and one on another machine (whose processes this host cannot see), are left alone
    assert instance.get_run_by_id(runs["live"]).status == dg.DagsterRunStatus.STARTED
    assert instance.get_run_by_id(runs["remote"]).status == dg.DagsterRunStatus.STARTED
    assert release_dead_runs(instance) == []
    instance.dispose()


def test_a_step_that_outlives_its_killed_run_worker_keeps_its_slot_until_it_ends(tmp_path):
    """Under the multiprocess executor a step runs in a child process, which SIGKILL of the run's
    process leaves running (on the card): the run is marked failed at once, its slot freed only when
    that step's process is gone."""
    (tmp_path / "dagster").mkdir()
    shutil.copy(INSTANCE_CONFIG, tmp_path / "dagster" / "dagster.yaml")
    script = tmp_path / "hold.py"
    script.write_text(MULTIPROCESS_HOLDER)
    worker = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=_env(tmp_path),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = None
    try:
        run_id = _wait_for_holder(tmp_path, worker, "hold_gpu_slot")
        instance = _instance(tmp_path)
        deadline = time.time() + 120
        while step is None:
            step = step_processes(instance, run_id, process_tags()["analogy/host"]).get("hold_gpu_slot")
            assert time.time() < deadline
            time.sleep(0.2)
        worker.kill()
        worker.wait()
        assert step.alive()
        assert release_dead_runs(instance) == [
            f"run {run_id} (pid {worker.pid}) ended without finishing: marked failed, the slots of steps still "
            f"running are kept until they end: hold_gpu_slot (pid {step.pid})"]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert _gpu_holders(instance) == [(run_id, "hold_gpu_slot")]
        assert release_dead_runs(instance) == []  # said once

        _kill(step.pid)
        assert not step.alive()
        assert release_dead_runs(instance) == [f"run {run_id} (failure) still held or waited for a pool slot: freed"]
        assert not _gpu_holders(instance)
        instance.dispose()
    finally:
        worker.kill()
        if step is not None and step.alive():
            _kill(step.pid)


def _kill(pid: int) -> None:
    """SIGKILL a process that is not our child (an orphan) and wait until it is gone."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        process.kill()
        process.wait(timeout=30)
