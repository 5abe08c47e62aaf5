"""Read-only views of catalog rows that the server shows: a photo with its faces, when photos
were ingested, the photo and box of one face, and the stored photos' files under a folder
(what the upload sweep keeps).

Kept apart from :mod:`countenance.catalog.sql` to keep each module small; ``SqlCatalog``
inherits them.

Example::

    catalog.photo_record(12)["faces"]        # [{"face_id": 40, "box": [...], ...}]
    catalog.face_photo(40)                    # (12, Box(...))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.governance import iso_utc
from countenance.errors import NotFound
from countenance.types import Box


class ViewCatalog:
    """Mixed into SqlCatalog: needs ``_db``."""

    _db: sa.Engine

    def photo_record(self, photo_id: int) -> dict[str, Any]:
        """A stored photo with its source and every face in it (skipped ones too, each with
        its box in pixels, quality and skip reason), as JSON-able data; NotFound when it is
        gone.

        Example: ``catalog.photo_record(12)["source"]`` is the name of the photo's source.
        """
        p, t, f = s.photos, s.sources, s.faces
        with self._db.connect() as conn:
            row = (
                conn.execute(
                    sa.select(
                        p.c.id,
                        p.c.uri,
                        p.c.page_url,
                        p.c.width,
                        p.c.height,
                        p.c.ingested_at,
                        p.c.jurisdiction,
                        t.c.name.label("source"),
                    )
                    .select_from(p.join(t, p.c.source_id == t.c.id))
                    .where(p.c.id == photo_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no photo {photo_id}")
            faces = conn.execute(
                sa.select(f.c.id, f.c.x1, f.c.y1, f.c.x2, f.c.y2, f.c.quality, f.c.skip_reason)
                .where(f.c.photo_id == photo_id)
                .order_by(f.c.id)
            ).all()
        return {
            "id": row["id"],
            "uri": row["uri"],
            "page_url": row["page_url"],
            "width": row["width"],
            "height": row["height"],
            "ingested_at": iso_utc(row["ingested_at"]),
            "jurisdiction": row["jurisdiction"],
            "source": row["source"],
            "faces": [
                {
                    "face_id": int(r[0]),
                    "box": [r[1], r[2], r[3], r[4]],
                    "quality": round(float(r[5]), 3),
                    "skip_reason": r[6],
                }
                for r in faces
            ],
        }

    def photo_dates(self, photo_ids: Iterable[int]) -> dict[int, str | None]:
        """When each stored photo of ``photo_ids`` was ingested (ISO 8601, UTC, to the
        second); photos that are gone are absent.

        Example: ``catalog.photo_dates({12})`` is ``{12: "2026-05-01T09:30:00+00:00"}``.
        """
        p = s.photos
        wanted = sorted({int(i) for i in photo_ids})
        out: dict[int, str | None] = {}
        with self._db.connect() as conn:
            for i in range(0, len(wanted), 900):
                query = sa.select(p.c.id, p.c.ingested_at).where(p.c.id.in_(wanted[i : i + 900]))
                out.update({int(r[0]): iso_utc(r[1]) for r in conn.execute(query)})
        return out

    def face_photo(self, face_id: int) -> tuple[int, Box]:
        """The id of the photo a stored face is in (skipped faces too) and the face's box in
        that photo's pixels; NotFound when the face is gone.

        Example: ``photo_id, box = catalog.face_photo(40)``.
        """
        f = s.faces
        with self._db.connect() as conn:
            row = conn.execute(
                sa.select(f.c.photo_id, f.c.x1, f.c.y1, f.c.x2, f.c.y2).where(f.c.id == face_id)
            ).first()
        if row is None:
            raise NotFound(f"no face {face_id}")
        return int(row[0]), Box(row[1], row[2], row[3], row[4])

    def stored_uris(self, prefix: str) -> set[str]:
        """The URIs of stored photos that begin with ``prefix`` (a folder, with its trailing
        separator): the files there that the catalog still refers to.

        Example: ``catalog.stored_uris("/data/uploads/")``.
        """
        p = s.photos
        with self._db.connect() as conn:
            # LIKE may match more than the prefix ("_" and "%" are wildcards): startswith
            # decides
            rows = conn.execute(sa.select(p.c.uri).where(p.c.uri.like(prefix + "%"))).scalars()
            return {uri for uri in rows if uri.startswith(prefix)}
