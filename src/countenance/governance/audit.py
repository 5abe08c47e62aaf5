"""The audit log: append-only and hash-chained.

Every event stores the SHA-256 of its own contents (:func:`canonical_hash`) and the hash of
the event before it, so editing, removing or reordering a past event breaks the chain at that
event. A one-row head (seq and hash of the latest event), written in the same transaction as
each append, anchors the end of the chain, so removing the last events is detected too.

What the chain alone cannot show: someone with write access to the database who rewrites an
event, every event after it, and the head. Keep a copy of :meth:`AuditLog.head` (or of an
export) somewhere else to catch that.

Example::

    audit = AuditLog(engine)
    with engine.begin() as conn:
        ...  # the write being audited, in the same transaction
        audit.record(conn, actor="alice", action="search", purpose="missing person",
                     case_ref="case-17", probe_sha256=digest, result_face_ids=[4, 9])
    report = audit.verify()
    assert report.ok, report.reason
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import numbers
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.errors import BackendError, InvalidArgument

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of event 1."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_BATCH = 5_000
_Row = sa.RowMapping


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
            "at": _iso(self.at),
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


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """What :meth:`AuditLog.verify` found.

    ``events`` counts the events that passed before the first problem (all of them when
    ``ok``); ``first_bad_seq`` names the first event that was edited, removed or moved, and
    ``reason`` says what is wrong with it.

    Example: ``AuditVerification(ok=False, events=8, first_bad_seq=9, reason="event 9 is
    missing")``.
    """

    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


def canonical_hash(
    *,
    seq: int,
    at: dt.datetime,
    actor: str,
    action: str,
    purpose: str | None,
    case_ref: str | None,
    probe_sha256: str | None,
    details: Mapping[str, Any] | None,
    result_face_ids: Iterable[int] | None,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of an event's canonical JSON: every field but ``hash``, keys sorted, no
    spaces, UTF-8, ``at`` as ISO-8601 UTC with microseconds, face ids as ints.

    A naive ``at`` is taken as UTC, as SQLite hands back the UTC time it stored.

    Example::

        digest = canonical_hash(seq=1, at=now, actor="alice", action="search", purpose=None,
                                case_ref=None, probe_sha256=None, details={},
                                result_face_ids=[4, 9], prev_hash=GENESIS_HASH)
    """
    payload = {
        "seq": seq,
        "at": _iso(at),
        "actor": actor,
        "action": action,
        "purpose": purpose,
        "case_ref": case_ref,
        "probe_sha256": probe_sha256,
        "details": details if details is None else dict(details),
        "result_face_ids": _ids_for_hash(result_face_ids),
        "prev_hash": prev_hash,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a row edited in SQL may hold anything; it must hash (and fail), not crash
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AuditLog:
    """The audit log of one catalog database (its ``audit_events`` and ``audit_head`` tables).

    Example::

        audit = AuditLog(engine)
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

            with engine.begin() as conn:
                ...  # tombstone the face
                audit.record(conn, actor="admin", action="erase", details={"face_id": 7})
        """
        return self._record(
            conn,
            actor=_required("actor", actor, 200),
            action=_required("action", action, 40),
            purpose=_optional("purpose", purpose),
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
            query = query.where(t.c.at >= _utc(since))
        if until is not None:
            query = query.where(t.c.at < _utc(until))
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
        if batch < 1:
            raise InvalidArgument("batch must be at least 1")
        try:
            return self._verify(batch)
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"cannot read the audit log: {exc}") from exc

    def _verify(self, batch: int) -> AuditVerification:
        h, t = s.audit_head, s.audit_events
        # one statement, so one snapshot of the head and the end of the log
        snapshot = sa.select(
            sa.select(h.c.seq).where(h.c.id == 1).scalar_subquery(),
            sa.select(h.c.hash).where(h.c.id == 1).scalar_subquery(),
            sa.select(sa.func.max(t.c.seq)).scalar_subquery(),
        )
        with self._db.connect() as conn:
            head_seq, head_hash, max_seq = conn.execute(snapshot).one()
        upto = max_seq if isinstance(max_seq, int) else int(head_seq or 0)

        passed, last_seq, last_id, last_hash = 0, 0, -1, GENESIS_HASH
        for row_id, seq, row in self._walk(upto, batch):
            if seq != last_seq + 1:
                return _bad(passed, last_seq + 1, _missing(last_seq + 1, seq - 1))
            if row_id <= last_id:
                return _bad(
                    passed,
                    last_seq,
                    f"events {last_seq} and {seq} are out of order: event {seq} was stored "
                    f"before event {last_seq} (rows were reordered)",
                )
            if row is None:
                return _bad(passed, seq, f"event {seq} was edited: its values no longer decode")
            if _row_hash(row) != row["hash"]:
                return _bad(
                    passed, seq, f"event {seq} was edited: its hash does not match its contents"
                )
            if row["prev_hash"] != last_hash:
                if seq == 1:
                    reason = "event 1 was rewritten: its prev_hash is not the chain's start"
                else:
                    reason = (
                        f"event {seq} does not follow event {last_seq}: the chain is broken "
                        "(reordered or rewritten)"
                    )
                return _bad(passed, seq, reason)
            passed, last_seq, last_id, last_hash = passed + 1, seq, row_id, row["hash"]

        if head_seq is None:
            return _bad(
                passed,
                None,
                "the audit head is missing: nothing shows whether events were removed from the end",
            )
        if last_seq < head_seq:
            where = f"ends at event {last_seq}" if last_seq else "holds no events"
            return _bad(
                passed,
                last_seq + 1,
                f"the log {where} but its head records event {head_seq}: events were removed "
                "from the end",
            )
        if last_seq > head_seq:
            return _bad(
                passed,
                head_seq + 1,
                f"the log ends at event {last_seq} but its head records event {head_seq}: "
                f"events from {head_seq + 1} on were added outside the audit log",
            )
        if head_hash != last_hash:
            if last_seq == 0:
                return _bad(passed, None, "the head of the empty log was rewritten")
            return _bad(
                passed,
                last_seq,
                f"event {last_seq} does not match the hash its head records: the last event or "
                "the head was rewritten",
            )
        return AuditVerification(ok=True, events=passed)

    def _walk(self, upto: int, batch: int) -> Iterator[tuple[int, int, _Row | None]]:
        """``(id, seq, row)`` of each event up to seq ``upto`` in seq order; row is None when
        its stored values no longer decode."""
        t = s.audit_events
        last = 0
        while last < upto:
            window = sa.and_(t.c.seq > last, t.c.seq <= upto)
            query = sa.select(t).where(window).order_by(t.c.seq).limit(batch)
            try:
                with self._db.connect() as conn:
                    rows = conn.execute(query).mappings().all()
                got: list[tuple[int, int, _Row | None]] = [(r["id"], r["seq"], r) for r in rows]
            except (ValueError, TypeError):
                # a value that no longer decodes (only an edit in SQL stores one): find which
                got = self._walk_one_by_one(window, batch)
            if not got:
                return
            yield from got
            last = got[-1][1]

    def _walk_one_by_one(
        self, window: sa.ColumnElement[bool], batch: int
    ) -> list[tuple[int, int, _Row | None]]:
        t = s.audit_events
        keys = sa.select(t.c.id, t.c.seq).where(window).order_by(t.c.seq).limit(batch)
        out: list[tuple[int, int, _Row | None]] = []
        with self._db.connect() as conn:
            for row_id, seq in conn.execute(keys).all():
                row: _Row | None
                try:
                    row = conn.execute(sa.select(t).where(t.c.id == row_id)).mappings().one()
                except (ValueError, TypeError):
                    row = None
                out.append((row_id, seq, row))
        return out


# helpers ----------------------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; they were stored in UTC
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _iso(value: dt.datetime) -> str:
    return _utc(value).isoformat(timespec="microseconds")


def _ids_for_hash(ids: Any) -> Any:
    if ids is None or isinstance(ids, str | bytes | Mapping) or not isinstance(ids, Iterable):
        return ids  # only a row edited in SQL holds such a value: hashed as is, so it fails
    # numpy integers become ints; a string or a bool (an edit) stays what it is, so it fails
    return [
        int(i) if isinstance(i, numbers.Integral) and not isinstance(i, bool) else i for i in ids
    ]


def _row_hash(row: _Row) -> str:
    # the stored values exactly as read, so that any edit to any of them changes the hash
    return canonical_hash(
        seq=row["seq"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        purpose=row["purpose"],
        case_ref=row["case_ref"],
        probe_sha256=row["probe_sha256"],
        details=row["details"],
        result_face_ids=row["result_face_ids"],
        prev_hash=row["prev_hash"],
    )


def _event(row: _Row) -> AuditEvent:
    details, ids = row["details"], row["result_face_ids"]
    return AuditEvent(
        seq=row["seq"],
        at=_utc(row["at"]),
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


def _bad(passed: int, seq: int | None, reason: str) -> AuditVerification:
    return AuditVerification(ok=False, events=passed, first_bad_seq=seq, reason=reason)


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"event {first} is missing"
    return f"events {first} to {last} are missing"


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
