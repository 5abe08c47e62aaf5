"""The audit log's hash chain: how each event is hashed, and how the chain is verified.

Each event row holds ``hash``, the SHA-256 of its canonical JSON (:func:`canonical_hash`):
every other field of the row (seq, time, actor, action, purpose, case, probe hash, details,
result face ids) and ``prev_hash``, the hash of the event before it (``GENESIS_HASH`` for
event 1). Editing any stored value changes that event's hash; removing, inserting or moving an
event breaks the link from the event after it. The one-row head (seq and hash of the latest
event) anchors the end, so removing the last events is caught too.

:func:`verify_chain` walks the events in seq order and proves that seqs run 1, 2, 3 ... with no
gap, that rows were stored in that order, that each hash matches its row, that each row links
to the one before, and that the head matches the last row. What it cannot prove: that nobody
with write access to the database rewrote an event, every event after it, and the head. A copy
of :meth:`~countenance.catalog.audit.AuditLog.head` (or of an export) kept somewhere else
catches that.

Example::

    digest = canonical_hash(seq=1, at=now, actor="alice", action="search", purpose=None,
                            case_ref=None, probe_sha256=None, details={},
                            result_face_ids=[4, 9], prev_hash=GENESIS_HASH)
    report = verify_chain(engine, batch=5_000)  # AuditVerification(ok=True, events=1)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.governance import as_utc
from countenance.errors import BackendError, InvalidArgument

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of event 1."""

_Row = sa.RowMapping


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """What :meth:`~countenance.catalog.audit.AuditLog.verify` found.

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
        "at": canonical_at(at),
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


def canonical_at(value: dt.datetime) -> str:
    """An event's time as its hash covers it: ISO-8601 UTC with microseconds, a naive time
    taken as UTC. An export writes ``at`` the same way, so that an exported event can be
    hashed again on its own.

    Example: ``canonical_at(dt.datetime(2024, 5, 1, 12, 0))`` is
    ``"2024-05-01T12:00:00.000000+00:00"``.
    """
    return as_utc(value).isoformat(timespec="microseconds")


def verify_chain(engine: sa.Engine, *, batch: int) -> AuditVerification:
    """Walk the whole chain in seq order, ``batch`` events at a time, and report the first
    event that was edited, removed or reordered, or a head that disagrees with the end.

    Events appended while it runs are left for the next run. Most callers use
    :meth:`~countenance.catalog.audit.AuditLog.verify`.

    Example::

        report = verify_chain(engine, batch=5_000)
        if not report.ok:
            print(report.reason)  # e.g. "event 9 is missing"
    """
    if batch < 1:
        raise InvalidArgument("batch must be at least 1")
    try:
        return _verify(engine, batch)
    except sa.exc.SQLAlchemyError as exc:
        raise BackendError(f"cannot read the audit log: {exc}") from exc


def _verify(engine: sa.Engine, batch: int) -> AuditVerification:
    h, t = s.audit_head, s.audit_events
    # one statement, so one snapshot of the head and the end of the log
    snapshot = sa.select(
        sa.select(h.c.seq).where(h.c.id == 1).scalar_subquery(),
        sa.select(h.c.hash).where(h.c.id == 1).scalar_subquery(),
        sa.select(sa.func.max(t.c.seq)).scalar_subquery(),
    )
    with engine.connect() as conn:
        head_seq, head_hash, max_seq = conn.execute(snapshot).one()
    upto = max_seq if isinstance(max_seq, int) else int(head_seq or 0)

    passed, last_seq, last_id, last_hash = 0, 0, -1, GENESIS_HASH
    for row_id, seq, row in _walk(engine, upto, batch):
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


def _walk(engine: sa.Engine, upto: int, batch: int) -> Iterator[tuple[int, int, _Row | None]]:
    """``(id, seq, row)`` of each event up to seq ``upto`` in seq order; row is None when
    its stored values no longer decode."""
    t = s.audit_events
    last = 0
    while last < upto:
        window = sa.and_(t.c.seq > last, t.c.seq <= upto)
        query = sa.select(t).where(window).order_by(t.c.seq).limit(batch)
        try:
            with engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
            got: list[tuple[int, int, _Row | None]] = [(r["id"], r["seq"], r) for r in rows]
        except (ValueError, TypeError):
            # a value that no longer decodes (only an edit in SQL stores one): find which
            got = _walk_one_by_one(engine, window, batch)
        if not got:
            return
        yield from got
        last = got[-1][1]


def _walk_one_by_one(
    engine: sa.Engine, window: sa.ColumnElement[bool], batch: int
) -> list[tuple[int, int, _Row | None]]:
    t = s.audit_events
    keys = sa.select(t.c.id, t.c.seq).where(window).order_by(t.c.seq).limit(batch)
    out: list[tuple[int, int, _Row | None]] = []
    with engine.connect() as conn:
        for row_id, seq in conn.execute(keys).all():
            row: _Row | None
            try:
                row = conn.execute(sa.select(t).where(t.c.id == row_id)).mappings().one()
            except (ValueError, TypeError):
                row = None
            out.append((row_id, seq, row))
    return out


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


def _bad(passed: int, seq: int | None, reason: str) -> AuditVerification:
    return AuditVerification(ok=False, events=passed, first_bad_seq=seq, reason=reason)


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"event {first} is missing"
    return f"events {first} to {last} are missing"
