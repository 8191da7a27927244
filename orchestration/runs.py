"""No pool slot outlives its run.

A run that dies without finishing (kill -9, the OOM killer, a reboot) stays STARTED in the instance
and keeps its `gpu` pool slot, so every later run of the instance would wait for it forever. Each
run `analogy demo` launches carries its process in tags (host, pid, the process's start time, so a
reused pid is told apart); a run launched from the UI or the schedule by Dagster's DefaultRunLauncher
has its worker's pid in Dagster's own "Started process for run" event. `release_dead_runs` marks the
runs of this host whose process is gone as failed and frees their slots (a step still running in a
process of its own keeps its slot until it ends); `analogy demo` calls it before it launches and
while a step waits for a slot, and the code location's `release_dead_runs` sensor every 30 s (under
`dagster dev` or the daemon). `SlotWait` says which run holds the slot a step waits for and makes
Ctrl-C and SIGTERM end that wait.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import psutil

HOST_TAG = "analogy/host"
PID_TAG = "analogy/pid"
PROCESS_STARTED_TAG = "analogy/process_started"
SLACK_SECONDS = 1.0  # two reads of one process's start time agree to well within this
POLL_SECONDS = 0.2  # how often a waiting run looks for Ctrl-C / SIGTERM
LOOK_SECONDS = 0.5  # how often it reads the instance's pools
RELEASE_SECONDS = 5.0  # how often, while a step waits, it looks for holders that died
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
# The run's states in which a process of its own should be alive.
LIVE_STATUSES = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                 dg.DagsterRunStatus.CANCELING]


def process_tags() -> dict[str, str]:
    """The tags that name this process: put on every run it launches."""
    process = psutil.Process()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(process.pid),
            PROCESS_STARTED_TAG: f"{process.create_time():.3f}"}


@dataclass(frozen=True)
class RunProcess:
    """The process a run executes in: `started` is its start time when known exactly (tags),
    `started_by` a time it had surely started by (Dagster's event)."""

    host: str
    pid: int
    started: float | None = None
    started_by: float | None = None

    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether the process still runs (a zombie or a newer process with its pid does not count)."""
        try:
            process = psutil.Process(self.pid)
            created = process.create_time()
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:  # someone else's process with this pid: not ours to judge
            return True
        if self.started is not None:
            return abs(created - self.started) <= SLACK_SECONDS
        return self.started_by is None or created <= self.started_by + SLACK_SECONDS


def _pid(entry) -> int | None:
    """The pid an event of Dagster's names in its metadata (the run's or a step's process)."""
    event = entry.dagster_event
    pid = (getattr(event.event_specific_data, "metadata", None) or {}).get("pid") if event else None
    return int(pid.value) if pid is not None else None


def run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunProcess | None:
    """The process of `run`: from its tags, else, for a run the DefaultRunLauncher started through a
    code server on this host, from Dagster's "Started process for run" event; None if unknown."""
    from dagster._core.storage.tags import GRPC_INFO_TAG

    tags = run.tags
    if PID_TAG in tags:
        return RunProcess(tags.get(HOST_TAG, ""), int(tags[PID_TAG]), started=float(tags[PROCESS_STARTED_TAG]))
    if GRPC_INFO_TAG not in tags:
        return None
    server = json.loads(tags[GRPC_INFO_TAG])
    if not server.get("socket") and server.get("host") not in (*LOCAL_HOSTS, socket.gethostname()):
        return None  # a code server elsewhere runs its workers there
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in reversed(records):
        entry = record.event_log_entry
        pid = _pid(entry)
        if pid is not None and (entry.dagster_event.message or "").startswith("Started process for run"):
            return RunProcess(socket.gethostname(), pid, started_by=entry.timestamp)
    return None


def step_processes(instance: dg.DagsterInstance, run_id: str, host: str) -> dict[str, RunProcess]:
    """The processes the run's steps ran in when each had one of its own (the multiprocess executor),
    by step key, from Dagster's STEP_WORKER_STARTED events; they run on the run's `host`."""
    found = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED).records:
        entry = record.event_log_entry
        pid = _pid(entry)
        if pid is not None and entry.step_key:
            found[entry.step_key] = RunProcess(host, pid, started_by=entry.timestamp)
    return found


def _free_slots(instance: dg.DagsterInstance, run_id: str, process: RunProcess | None) -> tuple[bool, list[str]]:
    """Free the pool slots of `run_id`, a run that is over, except those of steps whose own process
    still runs (the multiprocess executor's step outlives a killed run worker, and keeps its card).
    Returns whether anything was freed and the steps whose process (pid) keeps its slot."""
    storage = instance.event_log_storage
    infos = _pool_infos(storage).values()
    steps = {s.step_key for info in infos for s in info.claimed_slots if s.run_id == run_id} | \
            {p.step_key for info in infos for p in info.pending_steps if p.run_id == run_id}
    running = {}
    if process is not None and process.local:
        running = {key: p for key, p in step_processes(instance, run_id, process.host).items()
                   if key in steps and p.alive()}
    if not running:
        storage.free_concurrency_slots_for_run(run_id)
        return bool(steps), []
    for key in steps - set(running):
        storage.free_concurrency_slot_for_step(run_id, key)
    return bool(steps - set(running)), [f"{key} (pid {p.pid})" for key, p in sorted(running.items())]


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark every run of this host whose process is gone as failed (canceled, if it was being
    canceled) and free its pool slots; free the slots still held by runs that are over. A slot whose
    step still runs in a process of its own is freed once that process ends. Returns one line per
    run released."""
    released = []
    pools = instance.event_log_storage.supports_global_concurrency_limits
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=LIVE_STATUSES)):
        process = run_process(instance, run)
        if process is None or not process.local or process.alive():
            continue
        current = instance.get_run_by_id(run.run_id)  # another process may have released it meanwhile
        if current is None or current.status not in LIVE_STATUSES:
            continue
        message = (f"the run's process (pid {process.pid} on {process.host}) is gone: killed, out of memory or "
                   "the machine restarted")
        canceling = current.status == dg.DagsterRunStatus.CANCELING
        if canceling:
            instance.report_run_canceled(current, message=message)
        else:
            instance.report_run_failed(current, message=message)
        running = _free_slots(instance, run.run_id, process)[1] if pools else []
        slots = f"the slots of steps still running are kept until they end: {', '.join(running)}" if running \
            else "its pool slots freed"
        released.append(f"run {run.run_id} (pid {process.pid}) ended without finishing: marked "
                        f"{'canceled' if canceling else 'failed'}, {slots}")
    if not pools:
        return released
    storage = instance.event_log_storage
    for run_id in sorted(_pool_run_ids(storage)):  # the CLI runs without Dagster's daemon, so frees these itself
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            freed, _ = _free_slots(instance, run_id, run_process(instance, run) if run else None)
            if freed:
                released.append(f"run {run_id} ({run.status.value.lower() if run else 'deleted'}) still held or "
                                "waited for a pool slot: freed")
    return released


def _pool_infos(storage) -> dict:
    """Every pool's concurrency info (limit, claimed slots, pending steps), by pool name."""
    return storage.get_concurrency_infos(list(storage.get_concurrency_keys()))


def _pool_run_ids(storage) -> set[str]:
    """The runs that hold a pool slot, were given one or wait for one."""
    return storage.get_concurrency_run_ids() | {slot.run_id for info in _pool_infos(storage).values()
                                                for slot in info.claimed_slots}


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "an unknown time"


def waiting_line(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """One line on what the steps of `run_id` that wait for a pool slot wait for; None if none waits
    for a slot that another run holds."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or run_id not in storage.get_concurrency_run_ids():
        return None
    parts = []
    for pool, info in sorted(_pool_infos(storage).items()):
        steps = sorted(p.step_key for p in info.pending_steps if p.run_id == run_id and p.assigned_timestamp is None)
        if not steps:
            continue
        # a slot counts as taken from when it is assigned to a step, before the step claims it
        since = {(p.run_id, p.step_key): p.assigned_timestamp for p in info.pending_steps if p.assigned_timestamp}
        since |= {(s.run_id, s.step_key): since.get((s.run_id, s.step_key)) for s in info.claimed_slots}
        if since and all(holder_id == run_id for holder_id, _ in since):
            continue  # a step of this run holds it: the run goes on by itself
        holders = []
        for (holder_id, step_key), moment in sorted(since.items()):
            holder = instance.get_run_by_id(holder_id)
            process = run_process(instance, holder) if holder else None
            if process is not None and process.local:  # a step in a process of its own: that process
                process = step_processes(instance, holder_id, process.host).get(step_key, process)
            where = "pid unknown" if process is None else \
                f"pid {process.pid}" + ("" if process.local else f" on {process.host}")
            holders.append(f"run {holder_id} ({where}, step {step_key}) since {_when(moment)}")
        held = " and ".join(holders) if holders else f"no run (the pool's limit is {info.limit})"
        waits = f"step {steps[0]} waits" if len(steps) == 1 else f"steps {', '.join(steps)} wait"
        parts.append(f"{waits} for the {pool} pool's slot, held by {held}")
    return "; ".join(parts) + " (Ctrl-C stops the wait)" if parts else None


def _interrupt_main_thread() -> None:
    """Raise KeyboardInterrupt in the main thread, as Ctrl-C outside Dagster's capture would."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.main_thread().ident),
                                               ctypes.py_object(KeyboardInterrupt))


class SlotWait:
    """While this process runs a run tagged with `process_tags()`: when a step of it waits for a pool
    slot, releases dead runs and says (`say`, once per holder) which run holds the slot; Ctrl-C or
    SIGTERM during that wait ends it. Dagster's in-process executor captures both signals while a run
    executes but reads them only when a step starts, so a step waiting for a slot would never see
    them; here they become a KeyboardInterrupt in the main thread, which Dagster records as the run's
    interruption (the multiprocess executor reads them itself, so the interrupt is then left to it)."""

    def __init__(self, instance: dg.DagsterInstance, say: Callable[[str], None]):
        self._instance, self._say = instance, say
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="analogy-slot-wait", daemon=True)

    def __enter__(self) -> SlotWait:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:  # no interrupt is sent once the run is over
            self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        from dagster._utils.interrupts import check_captured_interrupt

        run_id, said, waiting, interrupted = None, set(), False, 0
        next_look = next_release = 0.0
        while not self._stop.wait(POLL_SECONDS):
            interrupted = interrupted + 1 if check_captured_interrupt() else 0
            if waiting and interrupted >= 2:  # still unread after a poll: nothing in Dagster will read it
                with self._lock:
                    if not self._stop.is_set():
                        _interrupt_main_thread()
                        return
            if time.monotonic() < next_look:
                continue
            next_look = time.monotonic() + LOOK_SECONDS
            try:
                if run_id is None:
                    runs = self._instance.get_runs(filters=dg.RunsFilter(tags=process_tags()), limit=1)
                    run_id = runs[0].run_id if runs else None
                line = waiting_line(self._instance, run_id) if run_id else None
                waiting = line is not None
                if waiting and time.monotonic() >= next_release:
                    next_release = time.monotonic() + RELEASE_SECONDS
                    for released in release_dead_runs(self._instance):
                        self._say(released)
                    line = waiting_line(self._instance, run_id)
                if line and line not in said:
                    said.add(line)
                    self._say(line)
            except Exception:  # a busy sqlite file ("database is locked") only delays the next look
                continue


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the command as Ctrl-C does (one line, exit 130), not silently with status 143."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

