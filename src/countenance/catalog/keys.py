"""API keys: who may call the server, in which role. Only a SHA-256 of each key is stored.

A key is ``cnt_`` and 43 URL-safe characters (256 random bits); it is shown once, when it is
created. The key's ``name`` is the actor the audit log records for every request made with it.
Creating and revoking keys is audited.

Example::

    store = catalog.key_store(audit)
    key, info = store.create("alice", "investigator", actor="admin")
    assert store.authenticate(key).role == "investigator"
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.audit import AuditLog
from countenance.catalog.governance import iso_utc
from countenance.errors import InvalidArgument, NotFound

ROLES = ("admin", "ingest", "investigator", "auditor")
PREFIX = "cnt_"
# last_used_at is a hint for operators, not a log: writing it on every request would
# serialise readers on SQLite's one write lock, so it is refreshed at most this often.
_TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One API key as stored (never the key itself)."""

    id: int
    name: str
    role: str
    created_at: str | None
    revoked_at: str | None = None
    last_used_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


def key_hash(key: str) -> str:
    """The SHA-256 (hex) under which a key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Create, list, revoke and check API keys in the catalog's ``api_keys`` table."""

    def __init__(self, db: sa.Engine, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    def create(self, name: str, role: str, *, actor: str) -> tuple[str, KeyInfo]:
        """A new key for ``name`` in ``role``; returns the key (shown once) and its record."""
        name = name.strip()
        if not name:
            raise InvalidArgument("a key needs a name")
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        t = s.api_keys
        s.check_text(t, {"name": name})
        key = PREFIX + secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        with self._db.begin() as conn:
            if conn.execute(sa.select(t.c.id).where(t.c.name == name)).first() is not None:
                raise InvalidArgument(f"a key named {name!r} exists; revoke it or pick another")
            conn.execute(
                t.insert().values(name=name, role=role, key_hash=key_hash(key), created_at=now)
            )
            self._audit.record(
                conn,
                actor=actor,
                action="key",
                details={"op": "create", "name": name, "role": role},
            )
        return key, self.get(name)

    def get(self, name: str) -> KeyInfo:
        t = s.api_keys
        with self._db.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no key named {name!r}")
        return _info(row)

    def live(self, key_id: int) -> KeyInfo | None:
        """The key with id ``key_id`` unless it is revoked or gone (for browser sessions)."""
        t = s.api_keys
        with self._db.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == key_id)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        return _info(row)

    def list(self) -> list[KeyInfo]:
        """Every key, revoked ones included, oldest first."""
        t = s.api_keys
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()
        return [_info(r) for r in rows]

    def revoke(self, name: str, *, actor: str) -> KeyInfo:
        """Revoke the key ``name``: from now on it is refused. Audited."""
        t = s.api_keys
        with self._db.begin() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.name == name, t.c.revoked_at.is_(None))
                .values(revoked_at=dt.datetime.now(dt.UTC))
            )
            if done.rowcount != 1:
                self.get(name)  # NotFound when there is no such key
                raise InvalidArgument(f"key {name!r} is already revoked")
            self._audit.record(
                conn, actor=actor, action="key", details={"op": "revoke", "name": name}
            )
        return self.get(name)

    def active_admins(self) -> int:
        t = s.api_keys
        with self._db.connect() as conn:
            query = sa.select(sa.func.count()).where(t.c.role == "admin", t.c.revoked_at.is_(None))
            return int(conn.execute(query).scalar_one())

    def authenticate(self, key: str) -> KeyInfo | None:
        """The live key ``key`` is, or None (unknown, malformed or revoked)."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        digest = key_hash(key)
        t = s.api_keys
        with self._db.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.key_hash == digest)).mappings().first()
        # the lookup is by hash, so timing tells nothing of the key; compare anyway, in
        # constant time, so a future change of lookup cannot open a timing channel
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            return None
        if row["revoked_at"] is not None:
            return None
        info = _info(row)
        self._touch(row)
        return info

    def _touch(self, row: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        last = row["last_used_at"]
        if last is not None and now - _aware(last) < _TOUCH_EVERY:
            return
        t = s.api_keys
        try:
            with self._db.begin() as conn:
                conn.execute(t.update().where(t.c.id == row["id"]).values(last_used_at=now))
        except sa.exc.OperationalError:  # the database is busy: the hint can wait
            pass


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        id=int(row["id"]),
        name=row["name"],
        role=row["role"],
        created_at=iso_utc(row["created_at"]),
        revoked_at=iso_utc(row["revoked_at"]),
        last_used_at=iso_utc(row["last_used_at"]),
    )
