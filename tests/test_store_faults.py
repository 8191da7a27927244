"""Faults of where files live: an object store that stops answering and a full disk end a run in
one line (no traceback), within a bound, leave no temporaries, and a re-run afterwards completes.

The object store is moto's server in a subprocess, frozen with SIGSTOP (it accepts connections and
never answers, the hardest case for timeouts) and thawed with SIGCONT (it keeps its objects).

The full disk is injected at the C library: ENOSPC_SHIM, compiled here with `cc` and preloaded into
the process under test, makes write(), pwrite() and writev() to a file under one folder fail with
ENOSPC once a budget of bytes was written there, and statvfs() report what is left of the budget.
That is what Python, pyarrow, DuckDB and Dagster's sqlite see on a full disk, without root or a
mount (a small tmpfs gives the same results; measured by hand). It needs a C compiler: without one
the disk tests fail, saying so, rather than skip.
"""

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from evaluation.ingestion.files import (
    STORE_ATTEMPTS,
    STORE_CONNECT_TIMEOUT_S,
    STORE_TIMEOUT_S,
    StoreUnavailable,
    atomic_write,
    location,
)

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "faults"

ENOSPC_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

static long long left = -1;  /* bytes the files under ENOSPC_UNDER may still take; -1: not read yet */
static const char *under;

static void setup(void) {
    if (left >= 0) return;
    under = getenv("ENOSPC_UNDER");
    const char *after = getenv("ENOSPC_AFTER");
    left = after ? atoll(after) : LLONG_MAX;
}

static int watched_fd(int fd) {
    char link[64], path[PATH_MAX];
    setup();
    if (!under) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return strncmp(path, under, strlen(under)) == 0;
}

/* how many of `count` bytes fit (a short write, as on a disk that fills); 0 and ENOSPC when none */
static size_t room(int fd, size_t count) {
    if (count == 0 || !watched_fd(fd)) return count;
    long long have = __atomic_load_n(&left, __ATOMIC_SEQ_CST);
    size_t fits = have <= 0 ? 0 : (long long)count > have ? (size_t)have : count;
    __atomic_fetch_sub(&left, (long long)fits, __ATOMIC_SEQ_CST);
    if (fits == 0) errno = ENOSPC;
    return fits;
}

#define REAL(name) static __typeof__(name) *real_##name; if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    size_t fits = room(fd, count);
    return count && !fits ? -1 : real_write(fd, buf, fits);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    size_t fits = room(fd, count);
    return count && !fits ? -1 : real_pwrite(fd, buf, fits, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64);
    size_t fits = room(fd, count);
    return count && !fits ? -1 : real_pwrite64(fd, buf, fits, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev);
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    if (total && watched_fd(fd)) {  /* all or nothing */
        if (__atomic_load_n(&left, __ATOMIC_SEQ_CST) < (long long)total) { errno = ENOSPC; return -1; }
        __atomic_fetch_sub(&left, (long long)total, __ATOMIC_SEQ_CST);
    }
    return real_writev(fd, iov, iovcnt);
}

static void shrink(const char *path, struct statvfs *st) {
    char real[PATH_MAX];
    setup();
    if (!under || !realpath(path, real) || strncmp(real, under, strlen(under)) != 0) return;
    long long have = __atomic_load_n(&left, __ATOMIC_SEQ_CST);
    fsblkcnt_t blocks = have <= 0 ? 0 : (fsblkcnt_t)(have / st->f_frsize);
    if (blocks < st->f_bavail) st->f_bavail = st->f_bfree = blocks;
}

int statvfs(const char *path, struct statvfs *st) {
    REAL(statvfs);
    int rc = real_statvfs(path, st);
    if (rc == 0) shrink(path, st);
    return rc;
}

int statvfs64(const char *path, struct statvfs64 *st) {
    REAL(statvfs64);
    int rc = real_statvfs64(path, st);
    if (rc == 0) shrink(path, (struct statvfs *)st);
    return rc;
}
"""


@pytest.fixture(scope="module")
def enospc(tmp_path_factory) -> Path:
    """The ENOSPC shim, built: preload it with ENOSPC_UNDER=<folder> ENOSPC_AFTER=<bytes>."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("the full-disk tests build a small C shim: install a C compiler (cc)")
    folder = tmp_path_factory.mktemp("enospc")
    (folder / "enospc.c").write_text(ENOSPC_SHIM)
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", "enospc.so", "enospc.c", "-ldl"], cwd=folder,
                   check=True)
    return folder / "enospc.so"


def full_after(shim: Path, folder: Path, budget: int) -> dict[str, str]:
    """The environment of a process for which `folder` is a disk that fills after `budget` bytes."""
    return {"LD_PRELOAD": str(shim), "ENOSPC_UNDER": str(folder.resolve()), "ENOSPC_AFTER": str(budget)}


def demo_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ANALOGY_HOME", "LD_PRELOAD")}
    return env | {"OMP_NUM_THREADS": "1"} | extra


def demo(home: str, env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestration.cli", "demo", "--home", home, "--methods", "no_edit",
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fresh_s3_filesystems():
    """No S3 filesystem (nor its memory of a store found unreachable) shared with other tests."""
    from evaluation.ingestion.object_store import S3Store

    S3Store.clear_instance_cache()
    yield
    S3Store.clear_instance_cache()


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("ANALOGY_STORE_TIMEOUT_S", "ANALOGY_STORE_ATTEMPTS"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_s3_locations_carry_bounded_timeouts_and_attempts(aws, fresh_s3_filesystems):
    from evaluation.ingestion.object_store import S3Store

    aws.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    home = location("s3://bucket/prefix")
    assert isinstance(home.fs, S3Store) and home.fs.retries == 1  # botocore's retries are the only ones
    config = home.fs.s3.meta.config  # the client s3fs built from the location's storage options
    assert (config.connect_timeout, config.read_timeout) == (STORE_CONNECT_TIMEOUT_S, STORE_TIMEOUT_S) == (5, 10)
    assert config.retries == {"mode": "standard", "total_max_attempts": STORE_ATTEMPTS} and STORE_ATTEMPTS == 3
    assert (home / "tables" / "x.parquet").fs.config_kwargs == home.fs.config_kwargs

    aws.setenv("ANALOGY_STORE_TIMEOUT_S", "2.5")
    aws.setenv("ANALOGY_STORE_ATTEMPTS", "2")
    config = location("s3://bucket/prefix").fs.s3.meta.config
    assert config.read_timeout == 2.5 and config.retries["total_max_attempts"] == 2
    aws.setenv("ANALOGY_STORE_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="ANALOGY_STORE_ATTEMPTS='0'"):
        location("s3://bucket/prefix")
    assert location("memory://bucket/x").storage_options == {}  # other protocols keep their own defaults


def test_a_store_that_stops_answering_fails_within_the_bound_in_one_line(aws, fresh_s3_filesystems):
    """A socket that accepts and never answers (a frozen store): the write gives up after its
    attempts × the timeout (+ backoff), and the calls after it fail at once."""
    aws.setenv("ANALOGY_STORE_TIMEOUT_S", "1")
    aws.setenv("ANALOGY_STORE_ATTEMPTS", "2")
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(16)  # the kernel accepts the connections; nobody reads them
        endpoint = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        aws.setenv("AWS_ENDPOINT_URL", endpoint)
        home = location(f"s3://{BUCKET}/home")
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            atomic_write(home / "tables" / "t.parquet", b"x" * 1000)
        assert time.monotonic() - start < 2 * 1 + 1 + 3  # 2 attempts × 1 s, ≤ 1 s of backoff, slack
        line = str(caught.value)
        assert "\n" not in line and endpoint in line and f"writing s3://{BUCKET}/home/tables/t.parquet" in line
        assert str(pickle.loads(pickle.dumps(caught.value))) == line  # as a Dask worker sends it back
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="not asked again"):
            (home / "blobs" / "b.png").read_bytes()
        assert time.monotonic() - start < 0.5

    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    aws.setenv("AWS_ENDPOINT_URL", refused)
    aws.setenv("ANALOGY_STORE_TIMEOUT_S", "1.5")  # other options: another filesystem, no memory of the first
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"object store {refused} unreachable while reading"):
        location(f"s3://{BUCKET}/home/tables/t.parquet").read_bytes()
    assert time.monotonic() - start < 5


@pytest.fixture
def moto():
    """moto's S3 server in a subprocess (so it can be frozen), with the bucket; yields (process, endpoint)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing", config=Config(connect_timeout=2, read_timeout=5))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert server.poll() is None and time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.3)
        yield server, endpoint, client
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        server.wait(timeout=30)


def test_demo_with_a_store_that_stops_answering_exits_fast_in_one_line_and_a_rerun_completes(moto, tmp_path):
    server, endpoint, client = moto
    home = f"s3://{BUCKET}/home"
    env = demo_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL=endpoint, DAGSTER_HOME=str(tmp_path / "dagster"))
    run = demo(home, env)
    try:
        deadline = time.monotonic() + 300
        while not client.list_objects_v2(Bucket=BUCKET, Prefix="home/tables/diff_tokens/").get("KeyCount"):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.2)  # generations come next
        server.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        out, _ = run.communicate(timeout=300)
        seconds = time.monotonic() - stopped
    finally:
        server.send_signal(signal.SIGCONT)
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, out
    assert seconds < 90 and "Traceback" not in out, (seconds, out)
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"analogy demo: the object store of {home} does not answer") and endpoint in last, out
    assert "re-run goes on" in last
    # one line per message (the banner, log records, what to do): no error spread over lines
    assert all(line.startswith(("Materialising", "20", "analogy demo: ")) for line in out.strip().splitlines()), out
    assert sum(" failed: object store " in line for line in out.splitlines()) == 1, out  # the first step only

    rerun = demo(home, env)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="home/tables/generations/")["KeyCount"] == 1
    assert client.head_object(Bucket=BUCKET, Key="home/analogy.duckdb")["ContentLength"] > 0


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


@pytest.mark.parametrize("budget,elsewhere", [(2_000_000, False), (20_000, True)],
                         ids=["dagster-storage-fills", "a-write-of-the-run-fills"])
def test_demo_on_a_full_disk_says_so_in_one_line_and_a_rerun_after_freeing_space_completes(enospc, tmp_path,
                                                                                           budget, elsewhere):
    """The home fills after `budget` bytes: with the demo's own Dagster instance in it, while Dagster
    stores the run (its sqlite fails, outside any step); with the instance elsewhere, in a step."""
    home = tmp_path / "home"
    dagster = {"DAGSTER_HOME": str(tmp_path / "dagster")} if elsewhere else {}
    run = demo(str(home), demo_env(**full_after(enospc, home, budget), **dagster))
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 1 and "Traceback" not in out, out
    lines = out.strip().splitlines()
    assert lines[-1].startswith(f"analogy demo: no space left for {home} (disk full writing {home}"), out
    assert "0 B free of " in lines[-1] and "free some and run again" in lines[-1], out
    if elsewhere:  # the step that failed, in one line: what it wrote, what it needs
        assert len(lines) == 3 and " failed: disk full writing " in lines[1] and "it needs " in lines[1], out
    assert temporaries(home) == []

    rerun = demo(str(home), demo_env(**dagster))  # the space freed
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert (home / "analogy.duckdb").exists() and temporaries(home) == []


BUILD_ON_A_FULL_DISK = """
import json, sys
from pathlib import Path
from evaluation.ingestion.files import DiskFull, atomic_write
from evaluation.presentation.views import build_database

home = Path(sys.argv[1])
said = {}
try:
    build_database(home / "analogy.duckdb", home / "tables", ["generations"])
except DiskFull as exc:
    said["build"] = str(exc)
try:
    atomic_write(home / "tables" / "generations" / "dataset=toy" / "part-0.parquet", b"x" * 65536)
except DiskFull as exc:
    said["write"] = str(exc)
print(json.dumps(said))
"""


def test_a_full_disk_fails_writes_and_the_database_build_in_one_line_without_temporaries(enospc, tmp_path):
    from evaluation.presentation.views import build_database
    from orchestration.storage import Store

    home = tmp_path / "home"
    rows = [{"triplet_id": f"t{i}", "method": "no_edit", "config_hash": "abc", "config": "{}", "seed": 1,
             "profile": "toy", "models": "toy", "inputs_key": "k", "b_prime_hash": None, "seconds": 0.1,
             "run_id": None, "error": None} for i in range(2)]
    table = Store(home).write_table("generations", "toy", rows)
    before = table.read_bytes()
    done = subprocess.run([sys.executable, "-c", BUILD_ON_A_FULL_DISK, str(home)], cwd=ROOT, capture_output=True,
                          text=True, env=demo_env(**full_after(enospc, home, 40_000), PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["write"].startswith(f"disk full writing {table}: it needs 64.0 KiB, ") and " free of " in said["write"]
    assert said["build"].startswith(f"disk full writing {home / 'analogy.duckdb'}: it needs more than the ")
    assert table.read_bytes() == before  # the old file is whole
    assert temporaries(home) == [] and not (home / "analogy.duckdb").exists()

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is a dead writer's: what it left is removed by the next build
    for name in (f".analogy.duckdb.{dead.pid}.tmp", f".analogy.duckdb.{dead.pid}.tmp.wal"):
        (home / name).write_bytes(b"left by a writer that died")
    build_database(home / "analogy.duckdb", home / "tables", ["generations"])
    assert (home / "analogy.duckdb").exists() and temporaries(home) == []
