"""The audit log: append-only and hash-chained.

An event is recorded inside the transaction of the write it audits, so both commit or neither
does. Each event stores the SHA-256 of its own contents and the hash of the event before it,
and a one-row head, updated in the same transaction, anchors the end; how the hashes are made
and checked is :mod:`countenance.catalog.chain`. This module writes, reads and exports
events and checks what callers ask to record.

The chain alone cannot show that someone with write access to the database rewrote an event,
every event after it, and the head. Keep a copy of :meth:`AuditLog.head` (or of an export)
somewhere else to catch that.

Example::

    audit = catalog.audit_log()
    with catalog.transaction() as conn:
        ...  # the write being audited, in the same transaction
        audit.record(conn, actor="alice", action="search", purpose="missing person",
                     case_ref="case-17", probe_sha256=digest, result_face_ids=[4, 9])
    report = audit.verify()
    assert report.ok, report.reason
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.chain import (
    AuditVerification,
    canonical_at,
    canonical_hash,
    verify_chain,
)
from countenance.catalog.governance import as_utc
from countenance.errors import BackendError, InvalidArgument

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_PURPOSE = 2000  # characters: a purpose says why, in a sentence or a paragraph
_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited action as stored; ``at`` is UTC and ``hash`` covers every other field.

    Example: ``AuditEvent(seq=1, at=..., actor="alice", action="search", purpose="missing
    person", case_ref="case-17", probe_sha256="9f86...", details={}, result_face_ids=(4, 9),
    prev_hash="000...0", hash="3a7b...")``.
    """

    seq: int
    at: dt.datetime
    actor: str
    action: str
    purpose: str | None
    case_ref: str | None
    probe_sha256: str | None
    details: dict[str, Any]
    result_face_ids: tuple[int, ...]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": canonical_at(self.at),
            "actor": self.actor,
            "action": self.action,
            "purpose": self.purpose,
            "case_ref": self.case_ref,
            "probe_sha256": self.probe_sha256,
            "details": self.details,
            "result_face_ids": list(self.result_face_ids),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


class AuditLog:
    """The audit log of one catalog database (its ``audit_events`` and ``audit_head`` tables).

    Example::

        audit = catalog.audit_log()
        audit.append(actor="alice", action="export", details={"faces": 120})
        for event in audit.events(actor="alice", limit=20):
            print(event.seq, event.action)
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._db = engine

    # writing ------------------------------------------------------------------------------

    def record(
        self,
        conn: sa.Connection,
        *,
        actor: str,
        action: str,
        purpose: str | None = None,
        case_ref: str | None = None,
        probe_sha256: str | None = None,
        details: Mapping[str, Any] | None = None,
        result_face_ids: Iterable[int] = (),
    ) -> AuditEvent:
        """Append one event inside the caller's open transaction on ``conn``.

        The event exists once that transaction commits and vanishes, chain intact, if it rolls
        back. Concurrent appenders queue on the head row. Raises InvalidArgument for an empty
        actor or action, a malformed probe hash, non-JSON details or non-integer face ids.

        Example::

            with catalog.transaction() as conn:
                ...  # tombstone the face
                audit.record(conn, actor="admin", action="erase", details={"face_id": 7})
        """
        return self._record(
            conn,
            actor=_required("actor", actor, 200),
            action=_required("action", action, 40),
            purpose=_optional("purpose", purpose, MAX_PURPOSE),
            case_ref=_optional("case_ref", case_ref, 200),
            probe_sha256=_probe_sha256(probe_sha256),
            details=_details(details),
            result_face_ids=_face_ids(result_face_ids),
        )

    def append(
        self,
        *,
        actor: str,
        action: str,
        purpose: str | None = None,
        case_ref: str | None = None,
        probe_sha256: str | None = None,
        details: Mapping[str, Any] | None = None,
        result_face_ids: Iterable[int] = (),
    ) -> AuditEvent:
        """Append one event in a transaction of its own; see :meth:`record`.

        Example: ``audit.append(actor="admin", action="policy", details={"min_age": 18})``.
        """
        try:
            with self._db.begin() as conn:
                return self.record(
                    conn,
                    actor=actor,
                    action=action,
                    purpose=purpose,
                    case_ref=case_ref,
                    probe_sha256=probe_sha256,
                    details=details,
                    result_face_ids=result_face_ids,
                )
        except sa.exc.SQLAlchemyError as exc:  # the commit itself failed
            raise BackendError(f"audit log write failed: {exc}") from exc

    def _record(
        self,
        conn: sa.Connection,
        *,
        actor: str,
        action: str,
        purpose: str | None,
        case_ref: str | None,
        probe_sha256: str | None,
        details: dict[str, Any],
        result_face_ids: tuple[int, ...],
    ) -> AuditEvent:
        h, t = s.audit_head, s.audit_events
        seq: int | None = None
        try:
            # Write the head before reading it: that takes its row lock (PostgreSQL) or the
            # database's write lock (SQLite) first, so concurrent appenders queue here and
            # each one reads the head its predecessor left.
            bumped = conn.execute(h.update().where(h.c.id == 1).values(seq=h.c.seq + 1))
            if bumped.rowcount != 1:
                raise BackendError(
                    "the audit log has no head row (it was deleted or never migrated); "
                    "run `countenance audit verify`"
                )
            seq, prev_hash = conn.execute(sa.select(h.c.seq, h.c.hash).where(h.c.id == 1)).one()
            fields: dict[str, Any] = {
                "seq": int(seq),
                "at": dt.datetime.now(dt.UTC),
                "actor": actor,
                "action": action,
                "purpose": purpose,
                "case_ref": case_ref,
                "probe_sha256": probe_sha256,
                "details": details,
                "result_face_ids": result_face_ids,
                "prev_hash": prev_hash,
            }
            event = AuditEvent(**fields, hash=canonical_hash(**fields))
            row = {**fields, "result_face_ids": list(result_face_ids), "hash": event.hash}
            conn.execute(t.insert().values(**row))
            conn.execute(h.update().where(h.c.id == 1).values(hash=event.hash))
        except sa.exc.IntegrityError as exc:
            raise BackendError(
                f"audit event {seq} already exists although the head says it is next: the log "
                "was written outside countenance; run `countenance audit verify`"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"audit log write failed: {exc}") from exc
        return event

    # reading ------------------------------------------------------------------------------

    def events(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
        after_seq: int | None = None,
    ) -> list[AuditEvent]:
        """Events in seq order: of one ``action`` and/or ``actor``, at or after ``since`` and
        before ``until`` (naive times are UTC), after ``after_seq`` (to page), at most
        ``limit``. They are what is stored: :meth:`verify` says whether it is genuine.

        Example: ``audit.events(action="search", actor="alice", after_seq=100, limit=50)``.
        """
        if limit is not None and limit < 0:
            raise InvalidArgument("limit must be zero or more")
        t = s.audit_events
        query = sa.select(t).order_by(t.c.seq)
        if action is not None:
            query = query.where(t.c.action == action)
        if actor is not None:
            query = query.where(t.c.actor == actor)
        if since is not None:
            query = query.where(t.c.at >= as_utc(since))
        if until is not None:
            query = query.where(t.c.at < as_utc(until))
        if after_seq is not None:
            query = query.where(t.c.seq > after_seq)
        if limit is not None:
            query = query.limit(limit)
        try:
            with self._db.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except (ValueError, TypeError) as exc:
            raise BackendError(
                f"an audit event can no longer be read ({exc}); run `countenance audit verify`"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"cannot read the audit log: {exc}") from exc
        return [_event(r) for r in rows]

    def export(
        self,
        fh: TextIO,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> int:
        """Write events as JSON Lines (one event a line, with ``hash`` and ``prev_hash``) to
        the text file ``fh``, in seq order and in batches; returns how many were written.

        Example::

            with open("audit.jsonl", "w", encoding="utf-8") as fh:
                n = audit.export(fh)
        """
        written = 0
        after: int | None = None
        while True:
            page = self.events(
                action=action, actor=actor, since=since, until=until, after_seq=after, limit=_BATCH
            )
            for event in page:
                fh.write(json.dumps(event.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
            written += len(page)
            if len(page) < _BATCH:
                return written
            after = page[-1].seq

    def head(self) -> tuple[int, str]:
        """Seq and hash of the latest event (``(0, GENESIS_HASH)`` while empty).

        Kept somewhere else, it shows whether the log was later cut back and its head forged.

        Example: ``seq, digest = audit.head()``.
        """
        h = s.audit_head
        try:
            with self._db.connect() as conn:
                row = conn.execute(sa.select(h.c.seq, h.c.hash).where(h.c.id == 1)).first()
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"cannot read the audit log: {exc}") from exc
        if row is None:
            raise BackendError("the audit log has no head row; run `countenance audit verify`")
        return int(row[0]), str(row[1])

    # verifying ----------------------------------------------------------------------------

    def verify(self, *, batch: int = _BATCH) -> AuditVerification:
        """Walk the whole chain in seq order, ``batch`` events at a time, and report the first
        event that was edited, removed or reordered, or a head that disagrees with the end.

        Events appended while it runs are left for the next run.

        Example::

            report = audit.verify()
            if not report.ok:
                print(report.reason)  # e.g. "event 9 is missing"
        """
        return verify_chain(self._db, batch=batch)


# helpers ----------------------------------------------------------------------------------


def _event(row: sa.RowMapping) -> AuditEvent:
    details, ids = row["details"], row["result_face_ids"]
    return AuditEvent(
        seq=row["seq"],
        at=as_utc(row["at"]),
        actor=row["actor"],
        action=row["action"],
        purpose=row["purpose"],
        case_ref=row["case_ref"],
        probe_sha256=row["probe_sha256"],
        details=dict(details) if isinstance(details, dict) else {},
        result_face_ids=tuple(ids) if isinstance(ids, list) else (),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _required(name: str, value: str, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name} must be a non-empty string")
    return _checked(name, value, max_len)


def _optional(name: str, value: str | None, max_len: int | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return _checked(name, value, max_len)


def _checked(name: str, value: str, max_len: int | None) -> str:
    if max_len is not None and len(value) > max_len:
        raise InvalidArgument(f"{name} must have at most {max_len} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise InvalidArgument(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{name} is not valid text: {exc}") from exc
    return value


def _probe_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise InvalidArgument("probe_sha256 must be 64 hexadecimal digits (a SHA-256)")
    return value.lower()


def _details(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument("details must be a mapping of names to JSON values")
    try:
        # stored as it reads back from JSON, so that what is hashed is what is stored
        text = json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"details must be JSON (string keys, finite numbers): {exc}") from exc
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _face_ids(value: Iterable[int]) -> tuple[int, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidArgument("result_face_ids must be a sequence of integer face ids")
    ids: list[int] = []
    for item in value:
        try:
            if isinstance(item, bool):
                raise TypeError("a bool is not a face id")
            ids.append(operator.index(item))
        except TypeError as exc:
            raise InvalidArgument(f"face id {item!r} is not an integer") from exc
    return tuple(ids)
