"""Faces grouped into persons in a store: new faces are placed at ingest, inside the batch's
transaction, by the average-linkage rule of :mod:`countenance.people.linkage`; a batch
re-clustering places every face again the same way.

Placing a batch costs one index search for all its faces (``k`` nearest each) and an exact
scan of the batch's own faces, which are not in the index until the batch commits; the
catalog answers who the neighbours belong to. Only neighbours at or above the edge can
name a candidate (an average never exceeds its largest term), so most background faces
cost the search alone.

Example::

    with core.change() as change:
        ids = catalog.add_photo(..., conn=change.conn)
        placed = place(core, change, ids, vectors)   # {"persons": 1, "assigned": 3}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from countenance.core import Change, WriteCore
from countenance.people.linkage import Constraints, Linkage, Neighbour, Vector
from countenance.ports import Vectors
from countenance.types import Bands

NEIGHBOURS = 32  # stored faces looked at per new face: the candidates of its person
# Two unassigned faces start a person only at a similarity strangers reach less than once per
# this many new faces, given how many unassigned faces there are to pair with by chance.
PAIR_BUDGET = 0.01

Progress = Callable[[int, int], None]


class CatalogGroups:
    """The :class:`~countenance.people.linkage.Groups` of a store, read and written in one
    open transaction."""

    def __init__(self, core: WriteCore, change: Change) -> None:
        self.catalog, self.space, self.conn = core.catalog, core.space, change.conn
        self.created = 0
        self.assigned = 0

    def persons_of(self, face_ids: Sequence[int]) -> dict[int, int]:
        return self.catalog.persons_of(face_ids, conn=self.conn)

    def summary(self, person: int) -> tuple[Vector, int]:
        _, vectors = self.catalog.person_vectors(self.space, person, conn=self.conn)
        return vectors.sum(axis=0, dtype=np.float32), len(vectors)

    def vectors(self, face_ids: Sequence[int]) -> dict[int, Vector]:
        return self.catalog.face_vectors(self.space, face_ids, conn=self.conn)

    def constraints(self, persons: Sequence[int]) -> Constraints:
        return Constraints(**self.catalog.person_rules(persons, conn=self.conn))

    def faces_of(self, person: int) -> dict[int, Vector]:
        ids, vectors = self.catalog.person_vectors(self.space, person, conn=self.conn)
        return dict(zip(ids, vectors, strict=True))

    def unassign(self, face_ids: Sequence[int]) -> None:
        self.assigned -= len(face_ids)
        self.catalog.assign_faces(face_ids, None, conn=self.conn)

    def new_person(self, face_ids: Sequence[int]) -> int:
        self.created += 1
        self.assigned += len(face_ids)
        return self.catalog.new_person(face_ids, conn=self.conn)

    def assign(self, face_ids: Sequence[int], person: int) -> None:
        self.assigned += len(face_ids)
        self.catalog.assign_faces(face_ids, person, conn=self.conn)

    def merge(self, person: int, into: int) -> None:
        self.catalog.merge_person(person, into, conn=self.conn)


def place(
    core: WriteCore,
    change: Change,
    face_ids: Sequence[int],
    vectors: Vectors,
    *,
    k: int = NEIGHBOURS,
    placed_before: Callable[[int], bool] | None = None,
) -> dict[str, int]:
    """Place new faces (stored in ``change``, not yet in the index) in persons; counts of
    persons created and faces assigned. ``placed_before(face_id)`` says which indexed
    neighbours count (a re-clustering counts only faces it has placed again)."""
    ids = [int(i) for i in face_ids]
    if not ids:
        return {"persons": 0, "assigned": 0}
    x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
    groups = CatalogGroups(core, change)
    unassigned = core.catalog.person_counts(core.space, conn=change.conn)["unassigned"]
    linkage = Linkage(groups, core.bands.erase, pair_edge=pair_edge(core.bands, unassigned))
    edge = linkage.edge
    found: list[list[Neighbour]] = [[] for _ in ids]
    n = core.index.count()
    if n:
        sims, near = core.index.search(x, min(k, n))
        for row, (s_row, i_row) in enumerate(zip(sims, near, strict=True)):
            found[row] = [
                (int(i), float(s))
                for i, s in zip(i_row, s_row, strict=True)
                if i >= 0 and s >= edge and (placed_before is None or placed_before(int(i)))
            ]
    for row, face in enumerate(ids):
        within = x[:row] @ x[row] if row else np.zeros(0, dtype=np.float32)
        batch = [(ids[j], float(within[j])) for j in np.flatnonzero(within >= edge)]
        linkage.place(face, x[row], found[row] + batch)
    return {"persons": groups.created, "assigned": groups.assigned}


def recluster(
    core: WriteCore, *, actor: str, progress: Progress | None = None, batch: int = 256
) -> dict[str, int]:
    """Place every face again, in id order, by the same rule (one transaction; the caller
    audited). Faces a person placed (named, merged, split)
    stay where they are, and what people decided binds the new persons as before."""
    catalog, space = core.catalog, core.space
    pinned = catalog.pinned_faces(space)
    total = int(core.index.count())
    done = 0
    counts = {"persons": 0, "assigned": 0, "released": 0}
    with core.change() as change:
        counts["released"] = catalog.unpin_clusters(conn=change.conn)
        for ids, vectors in catalog.embeddings(space):
            keep = np.asarray([int(i) not in pinned for i in ids], dtype=bool)
            ids, vectors = ids[keep], vectors[keep]
            for start in range(0, len(ids), batch):
                chunk = [int(i) for i in ids[start : start + batch]]
                placed = place(
                    core,
                    change,
                    chunk,
                    vectors[start : start + batch],
                    placed_before=_placed_before(chunk[0], pinned),
                )
                counts["persons"] += placed["persons"]
                counts["assigned"] += placed["assigned"]
                done += len(chunk)
                if progress is not None:
                    progress(min(done + len(pinned), total), total)
        catalog.drop_empty_persons(conn=change.conn)
        change.record(actor=actor, action="person", details={"op": "recluster", **counts})
    return counts


def _placed_before(first: int, pinned: set[int]) -> Callable[[int], bool]:
    """In a re-clustering, the faces placed before the batch starting at ``first``: those
    of lower ids, and those a person placed."""
    return lambda face: face < first or face in pinned


def pair_edge(bands: Bands, unassigned: int, budget: float = PAIR_BUDGET) -> float:
    """The similarity two unassigned faces need to start a person: the FMR 1e-4 edge, raised
    until a new face is expected to meet a stranger that well among ``unassigned`` faces at
    most ``budget`` times (``unassigned x FMR <= budget``). Without it, chance pairs of
    strangers grow with the gallery (at 10^6 faces, 1 in 10,000 is a hundred strangers)."""
    return max(bands.erase, bands.similarity_at(budget / max(unassigned, 1)))
