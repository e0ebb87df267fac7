"""The admin zone's credential: ``ANFU_ADMIN_TOKEN`` if set, else a bootstrap token made at
the first start. Of a bootstrap token only its SHA-256 digest is kept, in
``ANFU_HOME/admin-token.sha256`` (mode 0600); the token itself is shown once, on the
terminal, and never again. ``anfu admin token --rotate`` replaces the digest; a running
platform notices the new file on the next admin request, so a leaked token dies at once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from anfu.config import Settings
from anfu.crypto.operator_token import new_operator_token, operator_token_digest

DIGEST_FILE = "admin-token.sha256"
ROTATE_HINT = "`anfu admin token --rotate` makes a new one"


def digest_path(settings: Settings) -> Path:
    return settings.home / DIGEST_FILE


def _write_digest(path: Path, digest: str, *, exclusive: bool) -> None:
    """Write the digest file with mode 0600 from its first byte: exclusively (two first
    starts cannot both make a token), or by an atomic replace (rotation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path if exclusive else path.with_name(path.name + ".new")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(digest + "\n")
        out.flush()
        os.fsync(out.fileno())
    if not exclusive:
        os.replace(target, path)


@dataclass
class OperatorCredential:
    """The digest a request's bearer token must match; read again when the file changes."""

    path: Path | None
    fixed_digest: str | None = None
    _stamp: tuple[int, int] | None = field(default=None, repr=False)
    _digest: str | None = field(default=None, repr=False)

    def digest(self) -> str | None:
        """None: no token is valid (the file was removed): the zone refuses everyone."""
        if self.fixed_digest is not None or self.path is None:
            return self.fixed_digest
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp != self._stamp:
            self._digest = self.path.read_text().strip() or None
            self._stamp = stamp
        return self._digest


def prepare(settings: Settings) -> tuple[OperatorCredential, str]:
    """The credential the admin zone checks, and the one line ``anfu run`` prints about it
    (holding the token itself only when it was made just now)."""
    if settings.admin_token is not None:
        digest = operator_token_digest(settings.admin_token.get_secret_value())
        return (OperatorCredential(None, digest),
                "admin token: from ANFU_ADMIN_TOKEN")
    path = digest_path(settings)
    if path.exists():
        return (OperatorCredential(path),
                f"admin token: set earlier (its SHA-256 in {path}); {ROTATE_HINT}")
    token = new_operator_token()
    try:
        _write_digest(path, operator_token_digest(token), exclusive=True)
    except FileExistsError:  # another start made one a moment ago: theirs stands
        return (OperatorCredential(path),
                f"admin token: set earlier (its SHA-256 in {path}); {ROTATE_HINT}")
    return (OperatorCredential(path),
            f"admin token: {token}   (shown this once, keep it: only its SHA-256 is kept,"
            f" in {path}; {ROTATE_HINT})")


def rotate(settings: Settings) -> str:
    """A new bootstrap token; its digest replaces the old one. Returns the token."""
    token = new_operator_token()
    _write_digest(digest_path(settings), operator_token_digest(token), exclusive=False)
    return token
