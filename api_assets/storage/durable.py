"""Durable writes, the one way any data file is written: a reader sees the old file or the new
one, never a part, and what was written survives a crash once the call returns.

`replacing` (a temp file in the same directory, fsync, `os.replace`, fsync of the directory),
`write_atomic` (bytes through it), `fsync_file`, `fsync_dir`, `temp_sibling` (a hidden temp name
no data glob matches) and
`exchange` (Linux `renameat2(RENAME_EXCHANGE)`: two directories swapped in one step).
"""

import contextlib
import ctypes
import errno
import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_sibling(path: Path) -> Path:
    """A hidden, unique temp name next to `path` that no glob on `*.json` / `*.parquet` matches."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A hidden temp file next to `path` for the caller to write; on a clean exit it is fsynced,
    renamed over `path` and the directory fsynced (a reader sees the old file or the new one,
    never a part), on an error removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` durably and atomically (`replacing`), the file created with `mode`
    (a secret's file is 0600 from its first byte)."""
    with (
        replacing(path) as tmp,
        os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as f,
    ):
        f.write(data)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2). False when the platform or the file
    system cannot, so that the caller falls back to rename-aside."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))
