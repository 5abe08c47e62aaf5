"""Who is calling, and what their role lets them do.

API calls carry ``Authorization: Bearer KEY``; the browser UI signs in with a key once and
then carries a signed session cookie (HttpOnly, SameSite=Strict) holding the key's id and a
CSRF token that every form must echo. Either way the caller is a :class:`Principal` whose
``name`` is the actor the audit log records.

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
policy.read          x                 x           x
policy.write         x
audit.read           x                             x
keys                 x
=================  =====  ======  ============  =======

Example::

    @router.get("/v1/audit")
    def audit(principal: Principal = Depends(need("audit.read"))): ...
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from countenance.api.errors import ApiError

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
        }
    ),
    "ingest": frozenset({"sources.read", "sources.write", "ingest"}),
    "investigator": frozenset({"search", "verify", "view_results", "sources.read", "policy.read"}),
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


def server_secret(data_dir: Path) -> bytes:
    """The key that signs session cookies: random, kept in the data directory (mode 0600),
    so sessions survive a restart and never leave the machine."""
    path = data_dir / "server-secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    os.chmod(path, 0o600)
    return secret


class Sessions:
    """Signed, expiring session tokens: ``base64(json).hmac``."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def issue(self, key_id: int) -> str:
        payload = {
            "k": key_id,
            "csrf": secrets.token_urlsafe(24),
            "exp": int(time.time()) + SESSION_SECONDS,
        }
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def read(self, token: str | None) -> dict[str, Any] | None:
        """The session's payload, or None when the token is missing, forged or expired."""
        if not token or "." not in token:
            return None
        body, _, mac = token.rpartition(".")
        if not hmac.compare_digest(mac, self._sign(body)):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, TypeError):
            return None
        if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
            return None
        return payload

    def _sign(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()
