"""What people decide about persons: name, merge, split, hide, and "not this person". Each is
one transaction with its audit event (action ``person``), and each binds later clustering:
a named person's faces are pinned to it, split persons are never merged again, and a face
taken out of a person never goes back.

The audit event names the person and face ids, never the name given: the audit log is
kept for good, and a name is personal data that erasure must be able to remove.

Example::

    name(core, 7, "Ada Lovelace", actor="archivist")
    new = split(core, 7, [40, 41], actor="archivist")     # faces 40, 41 are someone else
"""

from __future__ import annotations

from collections.abc import Iterable

from countenance.core import WriteCore
from countenance.errors import InvalidArgument, NotFound

NAME_LIMIT = 200  # characters


def _check_name(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidArgument("a name must not be empty")
    if len(text) > NAME_LIMIT:
        raise InvalidArgument(f"a name holds at most {NAME_LIMIT} characters")
    return text


def _faces_of(core: WriteCore, person: int) -> list[int]:
    ids, _ = core.catalog.person_vectors(core.space, person)
    return ids


def _require(core: WriteCore, person: int) -> list[int]:
    """The person's faces; NotFound when there is no such person."""
    core.catalog.person_record(person, space=core.space)  # NotFound
    return _faces_of(core, person)


def name(core: WriteCore, person: int, value: str | None, *, actor: str) -> None:
    """Give a person a name (None removes it); its faces are pinned to it."""
    text = None if value is None else _check_name(value)
    faces = _require(core, person)
    with core.change() as change:
        core.catalog.name_person(person, text, conn=change.conn)
        change.record(
            actor=actor,
            action="person",
            details={"op": "name" if text else "unname", "person": person, "faces": len(faces)},
        )


def merge(core: WriteCore, into: int, others: Iterable[int], *, actor: str) -> int:
    """Move every face of ``others`` into ``into``; the persons merged away are gone, and
    their names with them unless ``into`` has none (then the first other name is kept).
    Returns how many faces moved."""
    rest = sorted({int(p) for p in others} - {int(into)})
    if not rest:
        raise InvalidArgument("merge needs at least one other person")
    target = core.catalog.person_record(into, space=core.space)
    records = [core.catalog.person_record(p, space=core.space) for p in rest]
    moved = sum(int(r["faces"]) for r in records)
    with core.change() as change:
        kept = target["name"] or next((r["name"] for r in records if r["name"]), None)
        for person in rest:
            core.catalog.merge_person(person, into, conn=change.conn)
        core.catalog.pin_person(into, conn=change.conn)
        if kept != target["name"]:
            core.catalog.name_person(into, kept, conn=change.conn)
        change.record(
            actor=actor,
            action="person",
            details={"op": "merge", "person": into, "merged": rest, "faces": moved},
        )
    return moved


def split(core: WriteCore, person: int, face_ids: Iterable[int], *, actor: str) -> int:
    """Move these faces of ``person`` into a new person, kept apart from it for good;
    both persons' faces are pinned. Returns the new person's id."""
    wanted = sorted({int(i) for i in face_ids})
    members = set(_require(core, person))
    if not wanted:
        raise InvalidArgument("split needs the faces to move")
    strangers = [i for i in wanted if i not in members]
    if strangers:
        raise NotFound(f"person {person} has no face {', '.join(map(str, strangers[:5]))}")
    if len(wanted) == len(members):
        raise InvalidArgument("split must leave the person at least one face")
    with core.change() as change:
        new = core.catalog.new_person(wanted, pinned=True, conn=change.conn)
        core.catalog.pin_person(person, conn=change.conn)
        core.catalog.keep_apart(person, new, conn=change.conn)
        change.record(
            actor=actor,
            action="person",
            details={"op": "split", "person": person, "new_person": new, "faces": wanted},
        )
    return new


def hide(core: WriteCore, person: int, hidden: bool = True, *, actor: str) -> None:
    """Hide a person from the people list (a stranger in the background), or show it."""
    _require(core, person)
    with core.change() as change:
        core.catalog.hide_person(person, hidden, conn=change.conn)
        change.record(
            actor=actor,
            action="person",
            details={"op": "hide" if hidden else "unhide", "person": person},
        )


def reject(core: WriteCore, person: int, face_ids: Iterable[int], *, actor: str) -> int:
    """ "These faces are not this person": they leave it (unassigned) and clustering never
    puts them back in it. Returns how many left."""
    wanted = sorted({int(i) for i in face_ids})
    members = set(_require(core, person))
    if not wanted:
        raise InvalidArgument("not needs the faces that are not this person")
    strangers = [i for i in wanted if i not in members]
    if strangers:
        raise NotFound(f"person {person} has no face {', '.join(map(str, strangers[:5]))}")
    with core.change() as change:
        core.catalog.assign_faces(wanted, None, conn=change.conn)
        core.catalog.reject_faces(person, wanted, conn=change.conn)
        core.catalog.pin_person(person, conn=change.conn)
        if len(wanted) == len(members):
            core.catalog.drop_empty_persons(conn=change.conn)
        change.record(
            actor=actor,
            action="person",
            details={"op": "not", "person": person, "faces": wanted},
        )
    return len(wanted)
