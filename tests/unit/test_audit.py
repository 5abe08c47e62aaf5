"""The audit log: append-only, hash-chained, and any edit to a past event is detected."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from countenance.catalog import schema
from countenance.catalog.audit import AuditEvent, AuditLog
from countenance.catalog.chain import GENESIS_HASH, canonical_hash
from countenance.catalog.sql import SqlCatalog
from countenance.errors import BackendError, InvalidArgument

N = 50
MIDDLE = 25


@pytest.fixture
def db(catalog_url: str) -> Iterator[sa.Engine]:
    """A migrated catalog database, on SQLite and on PostgreSQL (see tests/conftest.py)."""
    catalog = SqlCatalog.open(catalog_url)
    yield catalog._db
    catalog.close()


def _another(db: sa.Engine) -> SqlCatalog:
    """Another catalog, with its own engine, on the same database."""
    return SqlCatalog.open(db.url.render_as_string(hide_password=False))


def _fill(audit: AuditLog, n: int = N) -> list[AuditEvent]:
    """``n`` events of every kind, with unicode, nested details and face ids."""
    out = []
    for i in range(1, n + 1):
        kind = i % 5
        if kind == 0:
            out.append(
                audit.append(
                    actor=f"investigator-{i % 3}",
                    action="search",
                    purpose="missing person — Zoë",
                    case_ref=f"case-{i}",
                    probe_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                    details={"top": 10, "min_similarity": 0.42, "bands": ["strong", "possible"]},
                    result_face_ids=[i, i + 1000, 2**40 + i],
                )
            )
        elif kind == 1:
            out.append(
                audit.append(
                    actor="ingest-bot", action="ingest", details={"source": "family", "faces": i}
                )
            )
        elif kind == 2:
            out.append(
                audit.append(actor="admin", action="erase", details={"face_ids": [i], "why": None})
            )
        elif kind == 3:
            out.append(audit.append(actor="admin", action="policy", details={"min_age": 18}))
        else:
            out.append(audit.append(actor="auditor", action="export", purpose="annual review"))
    return out


def _sql(db: sa.Engine, statement: str, **params: Any) -> None:
    with db.begin() as conn:
        conn.execute(sa.text(statement), params)


def _bad_at(audit: AuditLog, seq: int) -> str:
    report = audit.verify(batch=7)  # small batches: problems across batch edges are found too
    assert not report.ok
    assert report.first_bad_seq == seq, report.reason
    assert report.reason is not None
    return report.reason


# the chain ---------------------------------------------------------------------------------


def test_an_untouched_log_verifies(db: sa.Engine) -> None:
    audit = AuditLog(db)
    events = _fill(audit)
    assert [e.seq for e in events] == list(range(1, N + 1))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    for batch in (1, 7, N, 5_000):
        report = audit.verify(batch=batch)
        assert report.ok, report.reason
        assert report.to_json() == {"ok": True, "events": N, "first_bad_seq": None, "reason": None}
    assert audit.head() == (N, events[-1].hash)


def test_stored_events_read_back_equal_to_what_was_recorded(db: sa.Engine) -> None:
    audit = AuditLog(db)
    recorded = _fill(audit, 10)
    assert audit.events() == recorded  # datetimes and JSON round-trip through SQLite


def test_an_empty_log_verifies_with_no_events(db: sa.Engine) -> None:
    report = AuditLog(db).verify()
    assert report.ok and report.events == 0 and report.first_bad_seq is None
    assert AuditLog(db).head() == (0, GENESIS_HASH)


EDITS = {
    "actor": "UPDATE audit_events SET actor = 'someone-else' WHERE seq = :seq",
    "action": "UPDATE audit_events SET action = 'policy' WHERE seq = :seq",
    "purpose": "UPDATE audit_events SET purpose = 'a better purpose' WHERE seq = :seq",
    "case_ref": "UPDATE audit_events SET case_ref = 'case-0' WHERE seq = :seq",
    "probe_sha256": "UPDATE audit_events SET probe_sha256 = :zeros WHERE seq = :seq",
    "details": "UPDATE audit_events SET details = '{\"top\": 1000}' WHERE seq = :seq",
    "result_face_ids": "UPDATE audit_events SET result_face_ids = '[25]' WHERE seq = :seq",
    "result_face_ids as strings": (
        "UPDATE audit_events SET result_face_ids = "
        '\'["25", "1025", "1099511627801"]\' WHERE seq = :seq'
    ),
    "at": "UPDATE audit_events SET at = '2020-01-01 00:00:00.000000' WHERE seq = :seq",
    "at (unreadable)": "UPDATE audit_events SET at = 'yesterday' WHERE seq = :seq",
    "details (unreadable)": "UPDATE audit_events SET details = '{not json' WHERE seq = :seq",
    "prev_hash": "UPDATE audit_events SET prev_hash = :zeros WHERE seq = :seq",
    "hash": "UPDATE audit_events SET hash = :zeros WHERE seq = :seq",
}


@pytest.mark.parametrize("column", list(EDITS))
def test_an_edit_to_any_column_names_the_edited_event(db: sa.Engine, column: str) -> None:
    if "unreadable" in column and db.dialect.name != "sqlite":
        pytest.skip("only SQLite stores a value its column type cannot read back")
    audit = AuditLog(db)
    _fill(audit)
    assert audit.verify().ok
    # MIDDLE is a search event: every column holds a value, so every edit changes something
    assert audit.events(after_seq=MIDDLE - 1, limit=1)[0].action == "search"
    _sql(db, EDITS[column], seq=MIDDLE, zeros="0" * 64)
    reason = _bad_at(audit, MIDDLE)
    assert reason.startswith(f"event {MIDDLE} was edited"), reason
    if "unreadable" in column:
        assert reason.endswith("its values no longer decode")
        with pytest.raises(BackendError, match="audit verify"):
            audit.events()


def test_a_removed_middle_event_is_named(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit)
    _sql(db, "DELETE FROM audit_events WHERE seq = :seq", seq=MIDDLE)
    assert _bad_at(audit, MIDDLE) == f"event {MIDDLE} is missing"


def test_several_removed_events_are_named_as_a_range(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit)
    _sql(db, "DELETE FROM audit_events WHERE seq IN (1, 2, 3)")
    assert _bad_at(audit, 1) == "events 1 to 3 are missing"


def test_a_removed_last_event_is_caught_by_the_head(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit)
    _sql(db, "DELETE FROM audit_events WHERE seq = :seq", seq=N)
    reason = _bad_at(audit, N)
    assert reason == (
        f"the log ends at event {N - 1} but its head records event {N}: "
        "events were removed from the end"
    )


def test_removing_every_event_is_caught_by_the_head(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit, 3)
    _sql(db, "DELETE FROM audit_events")
    assert "holds no events but its head records event 3" in _bad_at(audit, 1)


def test_a_rewritten_head_is_caught(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit)
    _sql(db, "UPDATE audit_head SET hash = :zeros", zeros="0" * 64)
    assert "the last event or the head was rewritten" in _bad_at(audit, N)


def test_a_removed_head_is_caught_and_stops_appends(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit, 3)
    _sql(db, "DELETE FROM audit_head")
    report = audit.verify()
    assert not report.ok and report.reason is not None
    assert "head is missing" in report.reason
    with pytest.raises(BackendError, match="no head row"):
        audit.append(actor="a", action="search")


def test_an_event_added_behind_the_logs_back_is_caught(db: sa.Engine) -> None:
    audit = AuditLog(db)
    events = _fill(audit, 5)
    # a well-formed event 6 inserted directly, without moving the head
    fields = {**events[-1].to_json(), "seq": 6, "prev_hash": events[-1].hash}
    fields["at"] = events[-1].at
    del fields["hash"]
    digest = canonical_hash(**fields)
    with db.begin() as conn:
        conn.execute(schema.audit_events.insert().values(**fields, hash=digest))
    assert "added outside the audit log" in _bad_at(audit, 6)
    with pytest.raises(BackendError, match="already exists"):
        audit.append(actor="a", action="search")


def _swap(db: sa.Engine, a: int, b: int, columns: list[str]) -> None:
    """Swap the values of ``columns`` between the rows of events ``a`` and ``b``."""
    t = schema.audit_events
    with db.begin() as conn:
        rows = {
            seq: conn.execute(sa.select(t).where(t.c.seq == seq)).mappings().one() for seq in (a, b)
        }
        if "seq" in columns:  # seq is unique: park one row out of the way first
            conn.execute(t.update().where(t.c.id == rows[a]["id"]).values(seq=-1))
        for this, other in ((b, a), (a, b)):
            values = {c: rows[other][c] for c in columns}
            conn.execute(t.update().where(t.c.id == rows[this]["id"]).values(**values))


ALL_BUT_ID = [
    "seq",
    "at",
    "actor",
    "action",
    "purpose",
    "case_ref",
    "probe_sha256",
    "details",
    "result_face_ids",
    "prev_hash",
    "hash",
]


def test_two_swapped_events_are_caught_as_reordered(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit)
    _swap(db, 10, 20, ALL_BUT_ID)  # each row intact, the chain intact in seq order
    assert [e.seq for e in audit.events()] == list(range(1, N + 1))
    reason = _bad_at(audit, 10)
    assert "out of order" in reason and "rows were reordered" in reason


def test_swapped_contents_under_fixed_positions_are_caught_as_edits(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit)
    _swap(db, 10, 20, [c for c in ALL_BUT_ID if c != "seq"])
    assert _bad_at(audit, 10) == "event 10 was edited: its hash does not match its contents"


def test_an_edit_with_a_recomputed_hash_is_caught_at_the_next_event(db: sa.Engine) -> None:
    audit = AuditLog(db)
    events = _fill(audit)
    forged = {**events[MIDDLE - 1].to_json(), "actor": "nobody"}
    forged["at"] = events[MIDDLE - 1].at
    del forged["hash"]
    digest = canonical_hash(**forged)
    _sql(
        db,
        "UPDATE audit_events SET actor = 'nobody', hash = :h WHERE seq = :seq",
        h=digest,
        seq=MIDDLE,
    )
    assert _bad_at(audit, MIDDLE + 1) == (
        f"event {MIDDLE + 1} does not follow event {MIDDLE}: "
        "the chain is broken (reordered or rewritten)"
    )


def test_a_forged_last_event_with_a_recomputed_hash_is_caught_by_the_head(db: sa.Engine) -> None:
    audit = AuditLog(db)
    events = _fill(audit, 5)
    forged = {**events[-1].to_json(), "actor": "nobody"}
    forged["at"] = events[-1].at
    del forged["hash"]
    _sql(
        db,
        "UPDATE audit_events SET actor = 'nobody', hash = :h WHERE seq = 5",
        h=canonical_hash(**forged),
    )
    assert "the last event or the head was rewritten" in _bad_at(audit, 5)


# writing -----------------------------------------------------------------------------------


def test_an_event_recorded_in_a_rolled_back_transaction_leaves_no_trace(db: sa.Engine) -> None:
    audit = AuditLog(db)
    _fill(audit, 5)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.begin() as conn:
        event = audit.record(conn, actor="admin", action="erase", details={"face_id": 3})
        assert event.seq == 6
        raise Boom

    assert [e.seq for e in audit.events()] == [1, 2, 3, 4, 5]
    assert audit.head()[0] == 5
    assert audit.verify().ok
    assert audit.append(actor="admin", action="erase").seq == 6
    assert audit.verify().ok


def test_record_joins_the_callers_transaction(db: sa.Engine) -> None:
    audit = AuditLog(db)
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE audit_head SET seq = seq WHERE id = 1"))  # a prior write
        first = audit.record(conn, actor="admin", action="source", details={"name": "family"})
        second = audit.record(conn, actor="admin", action="ingest")
    assert (first.seq, second.seq, second.prev_hash) == (1, 2, first.hash)
    assert audit.verify().ok


def test_a_second_appender_continues_the_chain(db: sa.Engine) -> None:
    first = AuditLog(db)
    fifth = _fill(first, 5)[-1]
    other = _another(db)
    try:
        second = AuditLog(other._db)
        event = second.append(actor="investigator", action="search")
        assert (event.seq, event.prev_hash) == (6, fifth.hash)
        assert first.append(actor="admin", action="policy").seq == 7
        assert second.verify().ok and first.verify().events == 7
    finally:
        other.close()


def test_concurrent_appenders_queue_on_the_head(db: sa.Engine) -> None:
    others = [_another(db) for _ in range(3)]
    try:
        logs = [AuditLog(c._db) for c in others]

        def work(log: AuditLog) -> list[int]:
            seqs = []
            for i in range(10):
                with log._db.begin() as conn:
                    conn.execute(sa.text("SELECT 1"))  # a read first, as an engine might
                    seqs.append(log.record(conn, actor="a", action="search", details={"i": i}).seq)
            return seqs

        with ThreadPoolExecutor(len(logs)) as pool:
            done = list(pool.map(work, logs))
        assert sorted(s for seqs in done for s in seqs) == list(range(1, 31))
        report = AuditLog(db).verify()
        assert report.ok and report.events == 30, report.reason
    finally:
        for c in others:
            c.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"actor": "", "action": "search"},
        {"actor": "   ", "action": "search"},
        {"actor": "alice", "action": ""},
        {"actor": "a" * 201, "action": "search"},
        {"actor": "alice", "action": "x" * 41},
        {"actor": "alice", "action": "search", "probe_sha256": "abc"},
        {"actor": "alice", "action": "search", "details": ["not", "a", "mapping"]},
        {"actor": "alice", "action": "search", "details": {"x": float("nan")}},
        {"actor": "alice", "action": "search", "details": {"x": object()}},
        {"actor": "alice", "action": "search", "result_face_ids": [1, "2"]},
        {"actor": "alice", "action": "search", "result_face_ids": [True]},
        {"actor": "alice", "action": "search", "result_face_ids": "12"},
        {"actor": "al\x00ice", "action": "search"},
    ],
)
def test_bad_arguments_are_refused_and_write_nothing(db: sa.Engine, kwargs: dict[str, Any]) -> None:
    audit = AuditLog(db)
    with pytest.raises(InvalidArgument):
        audit.append(**kwargs)
    assert audit.events() == [] and audit.head() == (0, GENESIS_HASH)


def test_values_are_normalised_before_hashing(db: sa.Engine) -> None:
    np = pytest.importorskip("numpy")
    audit = AuditLog(db)
    event = audit.append(
        actor="alice",
        action="search",
        probe_sha256="AB" * 32,
        details={"n": (1, 2)},
        result_face_ids=np.array([3, 4], dtype=np.int64),
    )
    assert event.probe_sha256 == "ab" * 32
    assert event.details == {"n": [1, 2]}
    assert event.result_face_ids == (3, 4) and all(type(i) is int for i in event.result_face_ids)
    assert audit.events() == [event]
    assert audit.verify().ok


# hashing -----------------------------------------------------------------------------------


def test_the_hash_is_the_same_for_any_timezone_and_naive_utc(db: sa.Engine) -> None:
    at = dt.datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=dt.UTC)
    fields: dict[str, Any] = {
        "seq": 1,
        "actor": "alice",
        "action": "search",
        "purpose": None,
        "case_ref": None,
        "probe_sha256": None,
        "details": {"b": 1, "a": 2},
        "result_face_ids": [1, 2],
        "prev_hash": GENESIS_HASH,
    }
    digest = canonical_hash(at=at, **fields)
    paris = dt.timezone(dt.timedelta(hours=2))
    assert canonical_hash(at=at.astimezone(paris), **fields) == digest
    assert canonical_hash(at=at.replace(tzinfo=None), **fields) == digest
    assert canonical_hash(at=at, **{**fields, "result_face_ids": (1, 2)}) == digest
    assert canonical_hash(at=at + dt.timedelta(microseconds=1), **fields) != digest
    assert canonical_hash(at=at, **{**fields, "result_face_ids": ["1", "2"]}) != digest
    payload = (
        '{"action":"search","actor":"alice","at":"2024-05-01T12:30:00.123456+00:00",'
        '"case_ref":null,"details":{"a":2,"b":1},"prev_hash":"' + GENESIS_HASH + '",'
        '"probe_sha256":null,"purpose":null,"result_face_ids":[1,2],"seq":1}'
    )
    assert digest == hashlib.sha256(payload.encode()).hexdigest()


# reading -----------------------------------------------------------------------------------


def test_export_writes_json_lines_whose_hashes_recompute(db: sa.Engine) -> None:
    audit = AuditLog(db)
    events = _fill(audit)
    fh = io.StringIO()
    assert audit.export(fh) == N
    lines = fh.getvalue().splitlines()
    assert len(lines) == N
    prev = GENESIS_HASH
    for line, event in zip(lines, events, strict=True):
        data = json.loads(line)
        assert data["hash"] == event.hash and data["prev_hash"] == prev
        fields = {k: v for k, v in data.items() if k != "hash"}
        fields["at"] = dt.datetime.fromisoformat(fields["at"])
        assert canonical_hash(**fields) == data["hash"]  # an export verifies on its own
        prev = data["hash"]
    assert "Zoë" in fh.getvalue()  # unicode kept, not escaped


def test_export_filters_and_pages(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import countenance.catalog.audit as audit_module

    monkeypatch.setattr(audit_module, "_BATCH", 4)  # several pages of 4
    audit = AuditLog(db)
    _fill(audit)
    fh = io.StringIO()
    assert audit.export(fh, action="search") == N // 5
    assert {json.loads(x)["action"] for x in fh.getvalue().splitlines()} == {"search"}
    everything = io.StringIO()
    assert audit.export(everything) == N
    assert [json.loads(x)["seq"] for x in everything.getvalue().splitlines()] == list(
        range(1, N + 1)
    )


def test_events_filters(db: sa.Engine) -> None:
    audit = AuditLog(db)
    events = _fill(audit)
    searches = audit.events(action="search")
    assert [e.seq for e in searches] == [e.seq for e in events if e.action == "search"]
    assert searches and {e.action for e in searches} == {"search"}
    assert [e.seq for e in audit.events(actor="admin")] == [
        e.seq for e in events if e.actor == "admin"
    ]
    assert audit.events(actor="admin", action="export") == []
    assert [e.seq for e in audit.events(after_seq=45)] == [46, 47, 48, 49, 50]
    assert [e.seq for e in audit.events(after_seq=10, limit=3)] == [11, 12, 13]
    assert audit.events(limit=0) == []
    since, until = events[9].at, events[19].at
    assert [e.seq for e in audit.events(since=since, until=until)] == list(range(10, 20))
    # the same instants in another zone, and as naive UTC, select the same events
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert [e.seq for e in audit.events(since=since.astimezone(tokyo))] == list(range(10, N + 1))
    assert [e.seq for e in audit.events(until=until.replace(tzinfo=None))] == list(range(1, 20))
    with pytest.raises(InvalidArgument):
        audit.events(limit=-1)


def test_verify_refuses_a_bad_batch_size(db: sa.Engine) -> None:
    with pytest.raises(InvalidArgument):
        AuditLog(db).verify(batch=0)
