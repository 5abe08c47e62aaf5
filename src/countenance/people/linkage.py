"""Average linkage, one face at a time: the rule that groups faces into persons.

Two groups of faces are one person when the *average* cosine similarity over every pair
across them reaches ``edge``, the space's similarity at a false-match rate of 1 in 10,000
(``Bands.erase``, measured on LFW's impostor pairs). For unit vectors that average is the dot
product of the groups' means, so a group is summed up by the sum of its vectors and its size,
and placing a face never needs an all-pairs pass:

1. the face's ``k`` nearest stored faces (one index search) name the candidate groups: the
   persons they belong to, and the unassigned faces among them as groups of one;
2. the face joins the candidate with the highest average linkage if that reaches ``edge``
   (a candidate that is only an unassigned face starts a new person with it);
3. the grown person then absorbs any other candidate whose linkage to it now reaches ``edge``
   (persons and unassigned faces alike), best first, the way a batch average-linkage pass
   would merge them;
4. a person of at most ``RECHECK`` faces is then re-clustered in batch (exact average
   linkage over its few faces): placing one face at a time can pair two strangers just above
   the edge before either's own faces arrive, and the batch pass takes them apart again. On
   LFW this closes the gap to batch average linkage over all faces (BCubed F 0.959-0.960
   in three orders against 0.960).

Two unassigned faces start a person only at ``pair_edge`` (at least ``edge``; the store
raises it with the number of unassigned faces, see
:func:`countenance.people.clusters.pair_edge`).

A face no group links to stays unassigned: background strangers seen once never form a
person. What people decided is respected: a person is never merged with one it was split
from (``apart``) or with another named person, and a face is never placed in a person it
was taken out of (``rejects``).

:class:`Linkage` keeps the groups it has touched in memory and asks its :class:`Groups`
backend for the rest (the catalog in a store, dictionaries in a benchmark), so the store
and ``benchmarks/cluster.py`` run the same code. Example::

    linkage = Linkage(MemoryGroups(), edge=bands.erase)
    for face_id, vector in faces:
        linkage.place(face_id, vector, index_neighbours(vector))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Neighbour = tuple[int, float]  # a stored face's id and its cosine similarity to the face


class Groups(Protocol):
    """Where persons live: who each face belongs to, each person's faces' sum, and what
    people decided. Writes are made at once (a store makes them inside its transaction)."""

    def persons_of(self, face_ids: Sequence[int]) -> dict[int, int]:
        """The person of each of these faces that has one."""
        ...

    def summary(self, person: int) -> tuple[Vector, int]:
        """The sum of a person's faces' vectors and how many there are."""
        ...

    def vectors(self, face_ids: Sequence[int]) -> dict[int, Vector]:
        """The stored vectors of these faces."""
        ...

    def constraints(self, persons: Sequence[int]) -> Constraints:
        """Names, splits and rejections that bind these persons."""
        ...

    def new_person(self, face_ids: Sequence[int]) -> int:
        """A new person holding these (unassigned) faces; its id."""
        ...

    def assign(self, face_ids: Sequence[int], person: int) -> None:
        """Put these faces (unassigned, or of a person being merged) in ``person``."""
        ...

    def merge(self, person: int, into: int) -> None:
        """Move every face of ``person`` into ``into``, and drop ``person``."""
        ...

    def faces_of(self, person: int) -> dict[int, Vector]:
        """The faces of a person, with their vectors."""
        ...

    def unassign(self, face_ids: Sequence[int]) -> None:
        """Take these faces out of their person."""
        ...


@dataclass(slots=True)
class Constraints:
    """What people decided about some persons."""

    named: set[int] = field(default_factory=set)  # persons with a name
    apart: set[frozenset[int]] = field(default_factory=set)  # pairs never merged
    rejects: dict[int, set[int]] = field(default_factory=dict)  # face -> persons it is not
    pinned: set[int] = field(default_factory=set)  # persons holding faces a person placed
    refuses: dict[int, set[int]] = field(default_factory=dict)  # person -> persons its faces
    # were taken out of: merging the two would put those faces back

    def update(self, other: Constraints) -> None:
        self.named |= other.named
        self.apart |= other.apart
        self.pinned |= other.pinned
        for face, persons in other.rejects.items():
            self.rejects.setdefault(face, set()).update(persons)
        for person, persons in other.refuses.items():
            self.refuses.setdefault(person, set()).update(persons)

    def may_merge(self, a: int, b: int) -> bool:
        return (
            frozenset((a, b)) not in self.apart
            and not (a in self.named and b in self.named)
            and b not in self.refuses.get(a, ())
            and a not in self.refuses.get(b, ())
        )

    def decided(self, person: int) -> bool:
        """Whether a person's faces were placed by a person (named, merged, split)."""
        return person in self.named or person in self.pinned


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one face went: its person (None: unassigned), and the persons and unassigned
    faces that person absorbed on the way."""

    face_id: int
    person: int | None
    linkage: float | None = None  # the average similarity that placed it
    merged: tuple[int, ...] = ()
    absorbed: tuple[int, ...] = ()


RECHECK = 16  # faces: a person this small is re-clustered in batch after each join


class Linkage:
    """Online average linkage over unit vectors (see the module docstring).

    ``pair_edge`` (at least ``edge``) is what two unassigned faces need to start a person:
    the store sets it by the number of unassigned faces a new face could pair with, so that
    strangers pairing by chance stay rare as the gallery grows."""

    def __init__(self, groups: Groups, edge: float, *, pair_edge: float | None = None) -> None:
        self.groups = groups
        self.edge = float(edge)
        self.pair_edge = max(self.edge, float(pair_edge if pair_edge is not None else edge))
        self._sums: dict[int, tuple[Vector, int]] = {}
        self._person: dict[int, int | None] = {}
        self._members: dict[int, set[int]] = {}  # the faces known here of each person
        self._constraints = Constraints()
        self._bound: set[int] = set()  # persons whose constraints are loaded

    # what is known ------------------------------------------------------------------------

    def _persons_of(self, face_ids: Iterable[int]) -> dict[int, int | None]:
        ids = list(dict.fromkeys(face_ids))
        unknown = [i for i in ids if i not in self._person]
        if unknown:
            found = self.groups.persons_of(unknown)
            for i in unknown:
                self._set(i, found.get(i))
        return {i: self._person[i] for i in ids}

    def _set(self, face_id: int, person: int | None) -> None:
        old = self._person.get(face_id)
        if old is not None:
            self._members.get(old, set()).discard(face_id)
        self._person[face_id] = person
        if person is not None:
            self._members.setdefault(person, set()).add(face_id)

    def _summary(self, person: int) -> tuple[Vector, int]:
        if person not in self._sums:
            total, n = self.groups.summary(person)
            self._sums[person] = (np.asarray(total, dtype=np.float64).astype(np.float32), n)
        return self._sums[person]

    def _bind(self, persons: Iterable[int]) -> Constraints:
        todo = [p for p in dict.fromkeys(persons) if p not in self._bound]
        if todo:
            self._constraints.update(self.groups.constraints(todo))
            self._bound.update(todo)
        return self._constraints

    def _mean(self, person: int) -> Vector:
        total, n = self._summary(person)
        return (total / max(n, 1)).astype(np.float32)

    # placing a face ------------------------------------------------------------------------

    def place(self, face_id: int, vector: Vector, neighbours: Iterable[Neighbour]) -> Placement:
        """Place a new face, given its nearest stored faces (any order; itself excluded)."""
        x = np.asarray(vector, dtype=np.float32).ravel()
        near = [(int(i), float(s)) for i, s in neighbours if int(i) != face_id and int(i) >= 0]
        of = self._persons_of(i for i, _ in near)
        persons = sorted({p for p in of.values() if p is not None})
        rules = self._bind(persons)
        rejected = rules.rejects.get(face_id, set())
        best: tuple[float, int | None, int | None] | None = None  # linkage, person, lone face
        for p in persons:
            if p in rejected:
                continue
            score = float(x @ self._mean(p))
            if score >= self.edge and (best is None or score > best[0]):
                best = (score, p, None)
        for i, sim in near:
            if of[i] is None and sim >= self.pair_edge and (best is None or sim > best[0]):
                best = (sim, None, i)
        self._set(face_id, None)
        if best is None:
            return Placement(face_id, None)
        score, person, lone = best
        if person is None:
            assert lone is not None
            person = self.groups.new_person([lone, face_id])
            vectors = self.groups.vectors([lone])
            self._sums[person] = (vectors[lone].astype(np.float32) + x, 2)
            self._set(lone, person)
            self._bound.add(person)
            self._refuse(person, rules.rejects.get(lone, set()) | rejected)
        else:
            self.groups.assign([face_id], person)
            total, n = self._summary(person)
            self._sums[person] = (total + x, n + 1)
            self._refuse(person, rules.rejects.get(face_id, set()))
        self._set(face_id, person)
        merged, absorbed = self._absorb(person, persons, [i for i, _ in near if of[i] is None])
        if merged:
            person = self._person[face_id] or person
        self._recheck(person)
        return Placement(face_id, self._person[face_id], score, tuple(merged), tuple(absorbed))

    def _refuse(self, person: int, rejected: set[int]) -> None:
        if rejected:
            self._constraints.refuses.setdefault(person, set()).update(rejected)

    def _recheck(self, person: int) -> None:
        """Re-cluster a small person in batch: joining one face at a time lets two strangers
        pair just above the edge before either's own faces arrive, and a batch pass, which
        merges the strongest links first, takes such a pair apart again. The largest part
        stays the person; other parts of two or more become persons; lone faces go back to
        unassigned. Persons that people placed are left as they are."""
        rules = self._constraints
        if rules.decided(person):
            return
        _, n = self._summary(person)
        if n > RECHECK or n < 3:
            return
        faces = self.groups.faces_of(person)
        if len(faces) > RECHECK:
            return
        ids = sorted(faces)
        parts = average_parts(np.stack([faces[i] for i in ids]), self.edge)
        if len(parts) == 1:
            return
        parts.sort(key=lambda part: (-len(part), min(part)))
        for part in parts[1:]:
            moved = [ids[j] for j in part]
            if len(moved) >= 2:
                other = self.groups.new_person(moved)
                self._sums[other] = (np.sum([faces[i] for i in moved], axis=0), len(moved))
                self._bound.add(other)
                for i in moved:
                    self._set(i, other)
            else:
                self.groups.unassign(moved)
                self._set(moved[0], None)
        kept = [ids[j] for j in parts[0]]
        self._sums[person] = (
            np.sum([faces[i] for i in kept], axis=0).astype(np.float32),
            len(kept),
        )

    def _absorb(
        self, person: int, persons: Sequence[int], lone: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """Merge into ``person`` every candidate whose average linkage to it reaches the
        edge, best first, re-scoring after each merge."""
        others = {p for p in persons if p != person}
        singles = {i for i in lone if self._person.get(i) is None}
        vectors = self.groups.vectors(sorted(singles)) if singles else {}
        merged: list[int] = []
        absorbed: list[int] = []
        while others or singles:
            rules = self._constraints
            mean = self._mean(person)
            scored: list[tuple[float, int, bool]] = []
            for p in others:
                if rules.may_merge(person, p):
                    scored.append((float(mean @ self._mean(p)), p, True))
            for i in singles:
                if person not in rules.rejects.get(i, set()):
                    scored.append((float(vectors[i] @ mean), i, False))
            if not scored:
                break
            score, key, is_person = max(scored)
            if score < self.edge:
                break
            total, n = self._summary(person)
            if is_person:
                other_total, other_n = self._summary(key)
                survivor, gone = (key, person) if key in rules.named else (person, key)
                self.groups.merge(gone, into=survivor)
                self._refuse(survivor, rules.refuses.pop(gone, set()))
                self._sums[survivor] = (total + other_total, n + other_n)
                self._sums.pop(gone, None)
                for face in list(self._members.pop(gone, ())):
                    self._set(face, survivor)
                self._rename(gone, survivor)
                others.discard(key)
                others.discard(survivor)
                merged.append(gone)
                person = survivor
            else:
                self.groups.assign([key], person)
                self._sums[person] = (total + vectors[key], n + 1)
                self._refuse(person, rules.rejects.get(key, set()))
                self._set(key, person)
                singles.discard(key)
                absorbed.append(key)
        return merged, absorbed

    def _rename(self, gone: int, survivor: int) -> None:
        """The constraints of a merged-away person pass to the one that absorbed it."""
        rules = self._constraints
        for refused in rules.refuses.values():
            if gone in refused:
                refused.discard(gone)
                refused.add(survivor)
        if gone in rules.pinned:
            rules.pinned.discard(gone)
            rules.pinned.add(survivor)
        rules.apart = {
            frozenset(survivor if p == gone else p for p in pair) for pair in rules.apart
        }
        for persons in rules.rejects.values():
            if gone in persons:
                persons.discard(gone)
                persons.add(survivor)
        if gone in rules.named:
            rules.named.discard(gone)
            rules.named.add(survivor)


def average_parts(vectors: npt.NDArray[np.float32], edge: float) -> list[list[int]]:
    """Batch average linkage of a few unit vectors cut at ``edge``: the groups, as lists of
    row numbers (what ``scipy.cluster.hierarchy`` gives with ``method="average"``,
    ``metric="cosine"`` and ``fcluster(t=1 - edge, criterion="distance")``)."""
    sums = np.asarray(vectors, dtype=np.float64).copy()
    sizes = np.ones(len(sums))
    parts = [[i] for i in range(len(sums))]
    while len(parts) > 1:
        link = (sums @ sums.T) / np.outer(sizes, sizes)
        np.fill_diagonal(link, -np.inf)
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(link)), link.shape))
        if link[i, j] < edge:
            break
        a, b = min(i, j), max(i, j)
        sums[a] += sums[b]
        sizes[a] += sizes[b]
        parts[a] += parts[b]
        sums = np.delete(sums, b, 0)
        sizes = np.delete(sizes, b)
        del parts[b]
    return parts


class MemoryGroups:
    """Groups held in dictionaries: the benchmark's backend, and the fake for unit tests."""

    def __init__(self) -> None:
        self.person: dict[int, int] = {}
        self.members: dict[int, set[int]] = {}
        self.vector: dict[int, Vector] = {}
        self.rules = Constraints()
        self._next = 1

    def add_face(self, face_id: int, vector: Vector) -> None:
        self.vector[face_id] = np.asarray(vector, dtype=np.float32).ravel()

    def persons_of(self, face_ids: Sequence[int]) -> dict[int, int]:
        return {i: self.person[i] for i in face_ids if i in self.person}

    def summary(self, person: int) -> tuple[Vector, int]:
        members = [self.vector[i] for i in self.members.get(person, ())]
        if not members:
            return np.zeros(len(next(iter(self.vector.values()))), dtype=np.float32), 0
        return np.sum(members, axis=0, dtype=np.float32), len(members)

    def vectors(self, face_ids: Sequence[int]) -> dict[int, Vector]:
        return {i: self.vector[i] for i in face_ids}

    def constraints(self, persons: Sequence[int]) -> Constraints:
        return self.rules

    def new_person(self, face_ids: Sequence[int]) -> int:
        person, self._next = self._next, self._next + 1
        self.assign(face_ids, person)
        return person

    def assign(self, face_ids: Sequence[int], person: int) -> None:
        for i in face_ids:
            old = self.person.get(int(i))
            if old is not None:
                self.members.get(old, set()).discard(int(i))
            self.person[int(i)] = person
            self.members.setdefault(person, set()).add(int(i))

    def merge(self, person: int, into: int) -> None:
        self.assign(sorted(self.members.pop(person, set())), into)

    def faces_of(self, person: int) -> dict[int, Vector]:
        return {i: self.vector[i] for i in sorted(self.members.get(person, ()))}

    def unassign(self, face_ids: Sequence[int]) -> None:
        for i in face_ids:
            old = self.person.pop(int(i), None)
            if old is not None:
                self.members.get(old, set()).discard(int(i))

    def labels(self, face_ids: Sequence[int]) -> list[int | None]:
        """Each face's person, None where unassigned."""
        return [self.person.get(int(i)) for i in face_ids]
