"""The people of a store, as the engine offers them (``db.people``): list and show persons,
name, merge, split, hide, "not this person", and re-cluster.

Example::

    db = countenance.open("countenance-data")
    for person in db.people.list():
        print(person["id"], person["name"], person["faces"], person["sources"])
    db.people.name(7, "Ada Lovelace", actor="archivist")
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from countenance.core import WriteCore
from countenance.errors import InvalidArgument
from countenance.people import clusters, interchange, persons
from countenance.people.clusters import Progress
from countenance.types import Match, PersonLead

MAX_LIST = 1000


class People:
    """Persons of one store; every change is one audited transaction."""

    def __init__(self, core: WriteCore) -> None:
        self.core = core

    def list(
        self,
        *,
        min_faces: int = 2,
        hidden: bool = False,
        named: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Persons with at least ``min_faces`` faces, most faces first (hidden ones only
        with ``hidden``; ``named`` True/False keeps only named/unnamed ones)."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIST}")
        if offset < 0 or min_faces < 0:
            raise InvalidArgument("offset and min_faces must not be negative")
        return self.core.catalog.list_persons(
            space=self.core.space,
            min_faces=min_faces,
            hidden=hidden,
            named=named,
            limit=limit,
            offset=offset,
        )

    def show(self, person: int) -> dict[str, Any]:
        """One person with every face of it (``face_list``); NotFound when there is none."""
        return self.core.catalog.person_record(int(person), space=self.core.space)

    def counts(self) -> dict[str, int]:
        """Indexed faces assigned to a person, and unassigned."""
        return self.core.catalog.person_counts(self.core.space)

    def of_faces(self, face_ids: Iterable[int]) -> dict[int, int | None]:
        """Each face's person (None: unassigned)."""
        return self.core.catalog.faces_persons(list(face_ids))

    def name(self, person: int, name: str | None, *, actor: str) -> None:
        persons.name(self.core, int(person), name, actor=actor)

    def merge(self, into: int, others: Iterable[int], *, actor: str) -> int:
        return persons.merge(self.core, int(into), others, actor=actor)

    def split(self, person: int, face_ids: Iterable[int], *, actor: str) -> int:
        return persons.split(self.core, int(person), face_ids, actor=actor)

    def hide(self, person: int, hidden: bool = True, *, actor: str) -> None:
        persons.hide(self.core, int(person), hidden, actor=actor)

    def reject(self, person: int, face_ids: Iterable[int], *, actor: str) -> int:
        return persons.reject(self.core, int(person), face_ids, actor=actor)

    def recluster(self, *, actor: str, progress: Progress | None = None) -> dict[str, int]:
        """Place every face again by the clustering rule; what people decided stays."""
        return clusters.recluster(self.core, actor=actor, progress=progress)

    def export_xmp(self, out_dir: str | Path) -> dict[str, int]:
        """Write an XMP sidecar (mwg-rs face regions and names) for every photo with a named
        face into ``out_dir``; see :mod:`countenance.people.interchange`."""
        return interchange.export_xmp(self.core, Path(out_dir))

    def import_xmp(self, directory: str | Path, *, actor: str) -> dict[str, Any]:
        """Give the names in the XMP sidecars under ``directory`` to the stored faces they
        describe (one audited transaction)."""
        return interchange.import_xmp(self.core, Path(directory), actor=actor)

    def group(
        self, matches: Sequence[Sequence[Match]]
    ) -> builtins.list[tuple[tuple[Match, ...], tuple[PersonLead, ...]]]:
        """Each probe face's matches with their person set, and grouped by person (best
        match first); matches of unassigned faces stay in the list only."""
        ids = sorted({m.face_id for per in matches for m in per})
        of = self.of_faces(ids) if ids else {}
        wanted = sorted({p for p in of.values() if p is not None})
        known = (
            {
                r["id"]: r
                for r in self.core.catalog.list_persons(
                    space=self.core.space,
                    min_faces=0,
                    hidden=True,
                    ids=wanted,
                    limit=len(wanted),
                )
            }
            if wanted
            else {}
        )
        out: builtins.list[tuple[tuple[Match, ...], tuple[PersonLead, ...]]] = []
        for per in matches:
            tagged = tuple(dataclasses.replace(m, person=of.get(m.face_id)) for m in per)
            leads: dict[int, builtins.list[Match]] = {}
            for m in tagged:
                if m.person is not None and m.person in known:
                    leads.setdefault(m.person, []).append(m)
            grouped = tuple(
                PersonLead(
                    person=p,
                    name=known[p]["name"],
                    similarity=max(m.similarity for m in found),
                    matched=tuple(m.face_id for m in found),
                    faces=known[p]["faces"],
                    photos=known[p]["photos"],
                    sources=tuple(known[p]["sources"]),
                    first_seen=known[p]["first_seen"],
                    last_seen=known[p]["last_seen"],
                )
                for p, found in sorted(leads.items(), key=lambda kv: -kv[1][0].similarity)
            )
            out.append((tagged, grouped))
        return out
