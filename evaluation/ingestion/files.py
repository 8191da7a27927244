"""Where files live (a local folder or an object store) and atomic writes.

A location is a local `Path`, or for a URL (`s3://bucket/prefix`, or any fsspec protocol:
`gs://`, `memory://`, …) a `upath.UPath`; both have the pathlib API the project uses. Object
store credentials come from the environment only (for S3: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL), never from the URL.

Atomic writes, locally: write to a temporary name in the target folder, flush it to disk,
then rename, so a reader never sees half a file and a crash leaves the old one. On an object
store: one PUT of the whole object (a multipart upload above 50 MiB, which the store also
publishes only when complete), so a reader never sees half an object there either.

A temporary name carries its writer's pid (`.<name>.<pid>.<random>.tmp`); a write with
`clean_stale=True` (every table write) first removes the temporaries of the same file
left by writers that are no longer alive (with their sidecars, such as DuckDB's `.tmp.wal`).
Files get the permissions of an ordinary file under the user's umask (not 0600).

Faults are said in one line (`StoreFault`, an OSError whose str() is the line): a full disk or
quota (ENOSPC, EDQUOT) while writing raises `DiskFull`, with the space the write needed and the
space left (shutil.disk_usage); an object store that does not answer raises `StoreUnavailable`
naming the endpoint, the operation and the key (evaluation.ingestion.object_store). For S3, botocore does
the retrying (its `standard` mode: exponential backoff with jitter, up to 1 s, then 2 s, 4 s, …
between attempts), s3fs none of its own (its loop would multiply botocore's attempts), so one
call gives up after at most ANALOGY_STORE_ATTEMPTS × (5 s to connect + ANALOGY_STORE_TIMEOUT_S
for an answer) + the backoff: by default 3 × (5 + 10) + 3 = 48 s; about 33 s for an endpoint
that accepts and then never answers, a few seconds for one that refuses. Environment:

    ANALOGY_STORE_TIMEOUT_S   seconds one request waits for the store's answer (default 10)
    ANALOGY_STORE_ATTEMPTS    attempts per request, the first included (default 3)

After a call found the store unreachable, the process's calls to it fail at once for
STORE_DOWN_HOLD_S (each step of a run would otherwise wait out its own retries).
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

Location = Path | UPath

STORE_CONNECT_TIMEOUT_S = 5.0
STORE_TIMEOUT_S = 10.0  # ANALOGY_STORE_TIMEOUT_S
STORE_ATTEMPTS = 3  # ANALOGY_STORE_ATTEMPTS
STORE_DOWN_HOLD_S = 60.0
"""How long calls to a store fail at once after one found it unreachable."""

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_DISK_TEXTS = (*(os.strerror(e) for e in FULL_DISK_ERRNOS), "database or disk is full")
"""How a full disk reads in the messages of writers that do not raise OSError (DuckDB, sqlite)."""


class StoreFault(OSError):
    """A fault of where files live, said in one line: str() is the line a user reads."""

    def __init__(self, code: int, line: str):
        super().__init__(code, line)
        self.line = line

    def __str__(self) -> str:
        return self.line

    def __reduce__(self):  # OSError's would call __init__ with (errno, line) (a Dask worker pickles it)
        return type(self), (self.errno, self.line)


class StoreUnavailable(StoreFault):
    """The object store did not answer (refused, timed out, dropped the connection) after its retries."""

    def __init__(self, line: str):
        super().__init__(errno.EHOSTUNREACH, line)

    def __reduce__(self):
        return type(self), (self.line,)


class DiskFull(StoreFault):
    """A write failed for want of space (ENOSPC) or quota (EDQUOT)."""


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


def free_space(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the filesystem `path` is (or would be) on: its nearest existing folder's."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return usage.free, usage.total


def disk_full(path: Path, needed: int | None = None, code: int = errno.ENOSPC, written: int | None = None) -> DiskFull:
    """The one line for a write to `path` that found the disk full: what it needed (or had written
    when the disk filled, where the writer does not say what it needs), what is left."""
    free, total = free_space(path)
    kind = "quota exceeded" if code == errno.EDQUOT else "disk full"
    need = (f"it needs {_size(needed)}, " if needed else
            f"it needs more than the {_size(written)} it had written, " if written else "")
    return DiskFull(code, f"{kind} writing {path}: {need}{_size(free)} free of {_size(total)} there")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it came from (its __cause__, else its __context__), outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def full_disk_errno(exc: BaseException) -> int | None:
    """ENOSPC or EDQUOT where `exc` (or what it came from) is a full disk, else None."""
    for e in causes(exc):
        if isinstance(e, OSError) and e.errno in FULL_DISK_ERRNOS:
            return e.errno
        text = str(e)
        for code, words in zip(FULL_DISK_ERRNOS, FULL_DISK_TEXTS):
            if words in text:
                return code
    return None


@contextmanager
def disk_full_said(path: Path, needed: int | None = None, written: list[int] | None = None) -> Iterator[None]:
    """A full disk while writing `path` raises DiskFull (one line) from the writer's error;
    `written`, where given, is filled with the bytes written when it failed."""
    try:
        yield
    except StoreFault:
        raise
    except Exception as exc:
        code = full_disk_errno(exc)
        if code is None:
            raise
        raise disk_full(path, needed, code, sum(written or ())) from exc


def _setting(name: str, default: float, kind: type) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={text!r}: expected a positive {'whole ' if kind is int else ''}number")
    return value


def store_options(protocol: str) -> dict:
    """fsspec storage options of an object store location: for S3, the timeouts and attempts above
    (as botocore.config.Config takes them; s3fs 2026.9 takes its timeouts only through config_kwargs)."""
    if protocol not in ("s3", "s3a"):
        return {}
    return {"config_kwargs": {
        "connect_timeout": STORE_CONNECT_TIMEOUT_S,
        "read_timeout": _setting("ANALOGY_STORE_TIMEOUT_S", STORE_TIMEOUT_S, float),
        "retries": {"mode": "standard", "total_max_attempts": _setting("ANALOGY_STORE_ATTEMPTS", STORE_ATTEMPTS, int)}}}


for _protocol in ("s3", "s3a"):  # imported on first use: s3fs costs a local home nothing
    fsspec.register_implementation(_protocol, "evaluation.ingestion.object_store.S3Store", clobber=True,
                                   errtxt="an s3:// location needs s3fs: pip install 'analogy[scale]'")


def location(value: str | os.PathLike | UPath) -> Location:
    """A local path (`~` expanded, absolute) or, for a URL with a scheme other than `file`, a UPath."""
    if isinstance(value, UPath) and is_remote(value):  # already a location
        return value
    text = os.fspath(value)
    parts = urlsplit(text)
    if "://" not in text or parts.scheme in ("", "file"):
        return Path(parts.path if parts.scheme == "file" else text).expanduser().resolve()
    if parts.username or parts.password:
        raise ValueError(f"{parts.scheme}://…: credentials belong in the environment (for S3: AWS_ACCESS_KEY_ID, "
                         "AWS_SECRET_ACCESS_KEY), not in the URL")
    return UPath(text, **store_options(parts.scheme))


def is_remote(path: Location) -> bool:
    return not isinstance(path, Path)


def location_text(path: Location) -> str:
    """The path as DuckDB, Dagster's metadata and people read it: a POSIX path or the URL."""
    return str(path) if is_remote(path) else path.as_posix()


@contextmanager
def _parquet_source(path: Location) -> Iterator:
    """What pyarrow reads: a local path, or an object store's file opened through its fsspec filesystem
    (pyarrow's own fsspec handler asks `isfile` first, which takes a store that does not answer
    for a missing file)."""
    if not is_remote(path):
        yield path
        return
    with path.fs.open(path.path, "rb") as file:
        yield file


def read_parquet(path: Location, schema: pa.Schema | None = None) -> pa.Table:
    """A Parquet file, local or on an object store."""
    with _parquet_source(path) as source:
        return pq.read_table(source, schema=schema)


def parquet_metadata(path: Location) -> pq.FileMetaData:
    with _parquet_source(path) as source:
        return pq.read_metadata(source)


def confined(root: Location, relative: str | os.PathLike) -> Location:
    """`relative` joined to `root`, refused (ValueError) where it escapes `root`: locally after
    following symlinks, on an object store after resolving `.` and `..` (keys have no links)."""
    if not is_remote(root):
        resolved = (root / relative).resolve()
        if not resolved.is_relative_to(root.resolve()):
            raise ValueError(f"path escapes the manifest folder {root} (resolves to {resolved})")
        return resolved
    key = posixpath.normpath(posixpath.join(root.path, os.fspath(relative)))
    if not key.startswith(root.path.rstrip("/") + "/"):
        raise ValueError(f"path escapes the manifest folder {root} (resolves to {root.protocol}://{key})")
    return root.joinpath(posixpath.relpath(key, root.path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete `.<name>.<pid>.*.tmp` files in `folder` left by writers that died, and their
    sidecars (`.<name>.<pid>.tmp.wal`); returns them."""
    removed = []
    for tmp in [*folder.glob(f".{name}.*.tmp"), *folder.glob(f".{name}.*.tmp.*")]:
        pid = tmp.name[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _remove_with_sidecars(tmp: Path) -> list[int]:
    """Delete `tmp` and its sidecars (`<tmp>.wal`); returns the bytes they took on disk."""
    sizes = []
    for path in (tmp, *tmp.parent.glob(f"{tmp.name}.*")):
        try:
            sizes.append(path.stat().st_blocks * 512)  # allocated, not the length of a sparse file
            path.unlink()
        except FileNotFoundError:
            pass
    return sizes


def atomic_write(path: Location, data: bytes, clean_stale: bool = False) -> None:
    if is_remote(path):  # one PUT: the store publishes the object whole or not at all
        path.fs.pipe_file(path.path, data)
        return
    with disk_full_said(path, len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        if clean_stale:
            remove_stale_temporaries(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_dir(path.parent)


@contextmanager
def built_in_place(path: Path) -> Iterator[Path]:
    """A temporary name next to local `path` for a writer that builds the file itself (DuckDB):
    renamed onto `path` when the block ends; where the block fails, removed with its sidecars
    (`.wal`), and a full disk raises DiskFull. Dead writers' temporaries are removed first."""
    written: list[int] = []
    with disk_full_said(path, written=written):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _remove_with_sidecars(tmp)
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            written += _remove_with_sidecars(tmp)
            raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
