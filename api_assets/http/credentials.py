"""The credential store: rotated refresh tokens, and nothing else, on disk.

One file per credential under `$DAGSTER_HOME/credentials/` (folder 0700, files 0600, created
with those modes rather than chmod-ed afterwards), replaced atomically (temp file, fsync,
`os.replace`). `lock(key)` is an exclusive `flock` on a sibling lock file, so that two processes
never spend the same refresh token: inside the lock, re-read the stored value first.
(`auth.RefreshTokenFlow` keeps a small JSON record: the token, which configured token it
descends from, and `in_doubt` once a grant that presented it failed after it was sent.)

The store refuses to live under the data root: data may be shared or published, secrets may not.
"""

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from api_assets.storage.durable import write_atomic
from api_assets.storage.layout import PROJECT_ROOT, data_root


def credential_key(token_url: str, client_id: str) -> str:
    """The store key of one credential: a hash, so that file names reveal nothing."""
    return hashlib.sha256(f"{token_url}\0{client_id}".encode()).hexdigest()[:32]


def default_directory() -> Path:
    """`$DAGSTER_HOME/credentials`, or `.dagster/credentials` in the project root when unset
    (the default the project's own commands give `DAGSTER_HOME`)."""
    home = os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT / ".dagster")
    return Path(home) / "credentials"


class CredentialStore:
    """Owner-only files holding one secret string per key."""

    def __init__(self, directory: Path | None = None):
        directory = Path(directory) if directory is not None else default_directory()
        resolved = directory.resolve()
        data = data_root()
        if resolved == data or data in resolved.parents:
            raise ValueError(
                f"the credential store {directory} is under the data root {data}: "
                "set DAGSTER_HOME (or the credential directory) outside API_ASSETS_DATA_DIR"
            )
        self.directory = directory

    def __repr__(self) -> str:
        return f"CredentialStore({self.directory})"

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (self.directory.stat().st_mode & 0o777) != 0o700:
            os.chmod(self.directory, 0o700)

    def _path(self, key: str) -> Path:
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise ValueError("a credential key is made of letters, digits, - and _")
        return self.directory / f"{key}.secret"

    def get(self, key: str) -> str | None:
        """The stored value, or None when nothing was stored."""
        try:
            value = self._path(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return value or None

    def put(self, key: str, value: str) -> None:
        """Store `value` atomically: readers see the old or the new value, never a mix."""
        self._ensure_dir()
        write_atomic(self._path(key), value.encode("utf-8"), mode=0o600)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on `key` across processes (and threads)."""
        self._ensure_dir()
        path = self.directory / f"{self._path(key).stem}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
