"""Names in and out as XMP sidecars (``mwg-rs`` face regions), so names are not locked in one
database: digiKam, Lightroom, Immich and PhotoPrism read and write the same regions.

Export writes one sidecar per stored photo that holds a named person's face, next to nothing
else: ``OUT/<photo file name>.xmp``, holding every indexed face of the photo as a region
(named where its person is) and the photo's SHA-256 as ``xmpMM:DocumentID``.

Import reads every ``*.xmp`` under a folder and finds the stored photo it describes (by the
DocumentID this export writes, else by the photo's file name when exactly one stored photo has
it); each named region is paired with the stored face it overlaps best (IoU >= 0.5). Then,
per name: a person already of that name takes the faces; else the unnamed person holding
most of them is given the name; else the faces form a new person of that name. An unnamed
person holding a named face joins the named one whole (clustering put them together); a face
of a person with another name is left where it is and counted as a conflict. One audited
transaction (``person``, op ``xmp_import``) for the whole import; the event holds counts.

Example::

    export_xmp(core, Path("sidecars/"))                # {"photos": 12, "faces": 30}
    import_xmp(core, Path("sidecars/"), actor="archivist")
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from countenance.core import WriteCore
from countenance.errors import InvalidArgument
from countenance.files import write_private
from countenance.people.xmp import Region, match_regions, read_sidecar, sidecar
from countenance.types import Box

MAX_SIDECARS = 100_000


def export_xmp(core: WriteCore, out_dir: Path) -> dict[str, int]:
    """Write a sidecar for every photo with a named face; counts of photos and named faces.
    A sidecar holds names of people: it is written readable by its owner only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = faces = 0
    used: set[str] = set()
    for photo in core.catalog.photo_regions(core.space):
        named = [f for f in photo["faces"] if f["name"]]
        if not named:
            continue
        regions = [Region(Box(*f["box"]), f["name"]) for f in photo["faces"]]
        name = Path(str(photo["uri"])).name or photo["sha256"]
        if name in used:  # two photos of one file name: the later one by its hash
            name = f"{Path(name).stem}-{photo['sha256'][:12]}{Path(name).suffix}"
        used.add(name)
        data = sidecar(photo["width"], photo["height"], regions, document=photo["sha256"])
        write_private(out_dir / f"{name}.xmp", data)
        photos += 1
        faces += len(named)
    return {"photos": photos, "faces": faces}


def import_xmp(core: WriteCore, directory: Path, *, actor: str) -> dict[str, Any]:
    """Read the sidecars under ``directory`` and give their names to the stored faces they
    describe (see the module docstring); what it did, with every sidecar it could not use."""
    files = sorted(directory.rglob("*.xmp"))
    if len(files) > MAX_SIDECARS:
        raise InvalidArgument(f"{directory}: more than {MAX_SIDECARS:,} sidecars")
    photos = core.catalog.photo_regions(core.space)
    by_digest = {p["sha256"]: p for p in photos}
    by_name: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for p in photos:
        by_name[Path(str(p["uri"])).name].append(p)
    report: dict[str, Any] = {"sidecars": len(files), "matched_faces": 0, "conflicts": 0}
    errors: list[dict[str, str]] = []
    wanted: dict[str, set[int]] = collections.defaultdict(set)  # name -> faces
    known: dict[int, dict[str, Any]] = {}
    for path in files:
        try:
            data = path.read_bytes()
            document = read_sidecar(data, width=1, height=1).document  # which photo first
        except (InvalidArgument, OSError) as exc:
            errors.append({"sidecar": str(path), "message": str(exc)})
            continue
        photo = by_digest.get(document or "")
        if photo is None:
            same = by_name.get(path.name.removesuffix(".xmp"), [])
            photo = same[0] if len(same) == 1 else None
        if photo is None:
            errors.append({"sidecar": str(path), "message": "no stored photo it describes"})
            continue
        # regions are fractions of the image: placed in the stored photo's pixels
        found = read_sidecar(data, width=photo["width"], height=photo["height"])
        stored = [Box(*f["box"]) for f in photo["faces"]]
        for index, region in match_regions(stored, [r for r in found.regions if r.name]):
            face = photo["faces"][index]
            known[face["face_id"]] = face
            assert region.name is not None
            wanted[region.name.strip()].add(face["face_id"])
    named_faces = 0
    with core.change() as change:
        catalog, conn = core.catalog, change.conn
        for name, face_ids in sorted(wanted.items()):
            if not name:
                continue
            persons = collections.Counter(known[f]["person"] for f in face_ids)
            target = catalog.person_named(name, conn=conn)
            if target is None:
                unnamed = [
                    (n, p)
                    for p, n in persons.items()
                    if p is not None and not _named(known, face_ids, p)
                ]
                if unnamed:
                    target = max(unnamed)[1]
                    catalog.name_person(target, name, conn=conn)
            for face in sorted(face_ids):
                current, current_name = known[face]["person"], known[face]["name"]
                if current_name and current_name != name:
                    report["conflicts"] += 1
                    continue
                if target is None:
                    target = catalog.new_person([face], name=name, pinned=True, conn=conn)
                elif current is None:
                    catalog.assign_faces([face], target, pinned=True, conn=conn)
                elif current != target:
                    catalog.merge_person(current, target, conn=conn)
                    for other in known.values():
                        if other["person"] == current:
                            other["person"] = target
                named_faces += 1
            if target is not None:
                catalog.pin_person(target, conn=conn)
        report["matched_faces"] = named_faces
        report["names"] = len(wanted)
        change.record(
            actor=actor,
            action="person",
            details={
                "op": "xmp_import",
                "sidecars": len(files),
                "faces": named_faces,
                "conflicts": report["conflicts"],
                "unusable": len(errors),
            },
        )
    report["errors"] = errors
    return report


def _named(known: dict[int, dict[str, Any]], faces: set[int], person: int) -> bool:
    return any(known[f]["person"] == person and known[f]["name"] for f in faces)
