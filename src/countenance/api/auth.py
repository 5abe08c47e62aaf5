"""Who is calling, and what their role lets them do.

API calls carry ``Authorization: Bearer KEY``; the browser UI signs in with a key once and
then carries a signed session cookie (HttpOnly, SameSite=Strict) holding a session id, the
key's id and a CSRF token that every form must echo; signing out revokes the session id on
the server, and revoking the key ends its sessions. Either way the caller is a
:class:`Principal` whose ``name`` is the actor the audit log records.

The roles and what each may do are in one table, :data:`PERMISSIONS`:

=================  =====  ======  ============  =======
permission         admin  ingest  investigator  auditor
=================  =====  ======  ============  =======
search, verify       x                 x
view_results         x                 x
sources.read         x      x          x           x
sources.write        x      x
ingest               x      x
erase, export        x                             x (export only)
people.read          x                 x
people.write         x                 x
people.recluster     x
watch                x                 x
policy.read          x                 x           x
policy.write         x
audit.read           x                             x
keys                 x
=================  =====  ======  ============  =======

``people.write`` names, merges, splits, hides persons and says "not this person";
``people.recluster`` places every face again. A ``watch`` holder sees and removes its own
watches and their alerts only, unless it is an admin (the service layer checks the owner).

Example::

    @router.get("/v1/audit")
    def audit(principal: Principal = Depends(need("audit.read"))): ...
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from itsdangerous import BadData, URLSafeTimedSerializer

from countenance.api.errors import ApiError
from countenance.errors import BackendError

PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "search",
            "verify",
            "view_results",
            "sources.read",
            "sources.write",
            "ingest",
            "erase",
            "export",
            "policy.read",
            "policy.write",
            "audit.read",
            "keys",
            "people.read",
            "people.write",
            "people.recluster",
            "watch",
        }
    ),
    "ingest": frozenset({"sources.read", "sources.write", "ingest"}),
    "investigator": frozenset(
        {
            "search",
            "verify",
            "view_results",
            "sources.read",
            "policy.read",
            "people.read",
            "people.write",
            "watch",
        }
    ),
    "auditor": frozenset({"audit.read", "export", "sources.read", "policy.read"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: an API key's id, name (the audit actor) and role."""

    key_id: int
    name: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


def bearer_principal(request: Request) -> Principal:
    """The principal of a ``/v1`` request's bearer key; 401 without a valid one, 429 past
    the key's rate limit."""
    state = request.app.state.server
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "send an API key: Authorization: Bearer KEY")
    info = state.keys.authenticate(key.strip())
    if info is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    state.limiter.check(info.name)
    principal = Principal(info.id, info.name, info.role)
    request.state.principal = principal
    return principal


def need(permission: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the bearer principal, 403 unless its role has ``permission``."""

    def dependency(request: Request) -> Principal:
        principal = bearer_principal(request)
        require(principal, permission)
        return principal

    return dependency


def require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise ApiError(
            403, "forbidden", f"the {principal.role} role may not do this ({permission})"
        )


# browser sessions ------------------------------------------------------------------------

SESSION_COOKIE = "countenance_session"
SESSION_SECONDS = 8 * 3600
SECRET_BYTES = 32  # the least key accepted: 256 bits, as HMAC-SHA256 (itsdangerous') wants
SECRET_FILE = "server-secret"
REVOKED_FILE = "revoked-sessions"


def server_secret(data_dir: Path) -> bytes:
    """The key that signs session cookies: random, kept in ``data_dir/server-secret`` (hex,
    mode 0600), so sessions survive a restart and never leave the machine. A file too short
    or unreadable is refused, never used: an empty key would let anyone sign a session.

    Example: ``Sessions(server_secret(Path("countenance-data")), ...)``
    """
    path = data_dir / SECRET_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return _create_secret(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad_secret(path, f"cannot be read ({exc})") from exc
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        raise _bad_secret(path, "is not hex") from None
    if len(secret) < SECRET_BYTES:
        raise _bad_secret(path, f"holds {len(secret)} bytes of key, fewer than {SECRET_BYTES}")
    return secret


def _bad_secret(path: Path, why: str) -> BackendError:
    return BackendError(
        f"the session signing key {path} {why}; delete the file and a new one is made at the"
        " next start (everyone signed in to the browser UI is signed out)"
    )


def _create_secret(path: Path) -> bytes:
    """Write a new key so that ``path`` is either absent or whole: written to a temporary
    file, flushed to disk, then linked into place (a crash or full disk leaves no empty or
    partial key; of two servers starting at once, the second reads the first's key)."""
    secret = secrets.token_bytes(SECRET_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return server_secret(path.parent)
        except OSError:  # a filesystem without hard links
            os.replace(tmp, path)
    except OSError as exc:
        raise BackendError(f"cannot create the session signing key {path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _fsync_dir(path.parent)
    return secret


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform opens folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class SessionToken:
    """What a valid session cookie says: its own id, the API key it signed in with, its CSRF
    token, and when it expires (seconds since the epoch)."""

    sid: str
    key_id: int
    csrf: str
    expires: float


class RevokedSessions:
    """Sessions signed out before they expired, so their cookies stop working: a set in
    memory, and a line ``SID EXPIRES`` each appended to ``data_dir/revoked-sessions`` (0600)
    so a restart keeps them out. Lines of expired sessions are dropped at each start.

    Example::

        revoked = RevokedSessions(data_dir / "revoked-sessions")
        revoked.add(token.sid, token.expires)
        assert token.sid in revoked
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._ids: dict[str, float] = {}
        self._load()

    def __contains__(self, sid: object) -> bool:
        with self._lock:
            expires = self._ids.get(sid) if isinstance(sid, str) else None
        return expires is not None

    def add(self, sid: str, expires: float) -> None:
        """Revoke ``sid`` until ``expires``; refused (BackendError) when it cannot be kept on
        disk, though this process already refuses the session."""
        now = time.time()
        with self._lock:
            self._ids = {s: e for s, e in self._ids.items() if e > now}
            self._ids[sid] = expires
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, f"{sid} {int(expires) + 1}\n".encode("ascii"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise BackendError(f"cannot record the sign-out in {self._path}: {exc}") from exc

    def _load(self) -> None:
        try:
            lines = self._path.read_text(encoding="ascii", errors="replace").splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackendError(f"cannot read the revoked sessions in {self._path}: {exc}") from exc
        now = time.time()
        for line in lines:
            sid, _, expires = line.partition(" ")
            with contextlib.suppress(ValueError):
                if float(expires) > now:
                    self._ids[sid] = float(expires)
        if len(self._ids) < len(lines):
            self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file with the live entries only (whole or not at all)."""
        tmp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.writelines(f"{s} {int(e)}\n" for s, e in self._ids.items())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
        except OSError:  # pruning is housekeeping: the old file still holds every entry
            with contextlib.suppress(OSError):
                tmp.unlink()


class Sessions:
    """Signed, expiring, revocable session tokens. itsdangerous signs them (HMAC-SHA256 with
    the server secret and a salt of their own, timestamped); each names a session id that
    :meth:`revoke` puts in the :class:`RevokedSessions`.

    Example::

        sessions = Sessions(server_secret(data_dir), RevokedSessions(data_dir / REVOKED_FILE))
        token = sessions.read(sessions.issue(key_id=3))
        sessions.revoke(token)  # the cookie no longer signs anyone in
    """

    SALT = "countenance.session"

    def __init__(self, secret: bytes, revoked: RevokedSessions) -> None:
        if len(secret) < SECRET_BYTES:
            raise BackendError(f"a session key needs {SECRET_BYTES} bytes, not {len(secret)}")
        self._signer = URLSafeTimedSerializer(secret, salt=self.SALT)
        self._revoked = revoked

    def issue(self, key_id: int) -> str:
        payload = {"sid": secrets.token_urlsafe(16), "k": key_id, "csrf": secrets.token_urlsafe(24)}
        return self._signer.dumps(payload)

    def read(self, cookie: str | None) -> SessionToken | None:
        """The session, or None when the cookie is missing, forged, expired or revoked."""
        if not cookie:
            return None
        try:
            payload, signed = self._signer.loads(
                cookie, max_age=SESSION_SECONDS, return_timestamp=True
            )
        except BadData:
            return None
        if not isinstance(payload, dict):
            return None
        sid, key_id, csrf = payload.get("sid"), payload.get("k"), payload.get("csrf")
        if not (isinstance(sid, str) and isinstance(key_id, int) and isinstance(csrf, str)):
            return None
        if sid in self._revoked:
            return None
        return SessionToken(sid, key_id, csrf, signed.timestamp() + SESSION_SECONDS)

    def revoke(self, token: SessionToken) -> None:
        self._revoked.add(token.sid, token.expires)
