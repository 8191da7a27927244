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
left by writers that are no longer alive.
Files get the permissions of an ordinary file under the user's umask (not 0600).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

Location = Path | UPath


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
    return UPath(text)


def is_remote(path: Location) -> bool:
    return not isinstance(path, Path)


def location_text(path: Location) -> str:
    """The path as DuckDB, Dagster's metadata and people read it: a POSIX path or the URL."""
    return str(path) if is_remote(path) else path.as_posix()


def _parquet_where(path: Location) -> tuple:
    """(source, filesystem) as pyarrow takes them: an object store's files through its fsspec filesystem."""
    return (path.path, path.fs) if is_remote(path) else (path, None)


def read_parquet(path: Location, schema: pa.Schema | None = None) -> pa.Table:
    """A Parquet file, local or on an object store."""
    source, filesystem = _parquet_where(path)
    return pq.read_table(source, filesystem=filesystem, schema=schema)


def parquet_metadata(path: Location) -> pq.FileMetaData:
    source, filesystem = _parquet_where(path)
    return pq.read_metadata(source, filesystem=filesystem)


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
    """Delete `.<name>.<pid>.*.tmp` files in `folder` left by writers that died; returns them."""
    removed = []
    for tmp in folder.glob(f".{name}.*.tmp"):
        pid = tmp.name[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write(path: Location, data: bytes, clean_stale: bool = False) -> None:
    if is_remote(path):  # one PUT: the store publishes the object whole or not at all
        path.fs.pipe_file(path.path, data)
        return
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
