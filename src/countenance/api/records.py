"""Read-only views of catalog rows the server shows and the face crops it cuts.

Example::

    photo = photo_record(engine, 12)          # uri, size, source, ingested_at, faces
    jpeg = face_crop(engine, face_id=40)      # bytes of a JPEG around the face
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from PIL import Image

from countenance import imaging
from countenance.catalog import schema as s
from countenance.catalog.governance import iso_utc
from countenance.engine import Engine
from countenance.errors import NotFound

CROP_SIDE = 160  # pixels of the square crop shown in a lead's card


def photo_record(engine: Engine, photo_id: int) -> dict[str, Any]:
    """A stored photo with its source and every face in it; NotFound when it is gone."""
    p, t, f = s.photos, s.sources, s.faces
    with engine.catalog.db.connect() as conn:
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


def photo_dates(engine: Engine, photo_ids: set[int]) -> dict[int, str | None]:
    """When each photo was ingested (the date a lead shows)."""
    if not photo_ids:
        return {}
    p = s.photos
    with engine.catalog.db.connect() as conn:
        rows = conn.execute(
            sa.select(p.c.id, p.c.ingested_at).where(p.c.id.in_(sorted(photo_ids)))
        ).all()
    return {int(r[0]): iso_utc(r[1]) for r in rows}


def face_photo(engine: Engine, face_id: int) -> tuple[int, list[int]]:
    """The photo id and box of a stored face; NotFound when it is gone."""
    f = s.faces
    with engine.catalog.db.connect() as conn:
        row = conn.execute(
            sa.select(f.c.photo_id, f.c.x1, f.c.y1, f.c.x2, f.c.y2).where(f.c.id == face_id)
        ).first()
    if row is None:
        raise NotFound(f"no face {face_id}")
    return int(row[0]), [row[1], row[2], row[3], row[4]]


def photo_bytes(engine: Engine, uri: str) -> bytes:
    """The stored photo's file, read within the size limit; NotFound when it is no longer
    on this machine (only local files are served: the server never fetches a URL)."""
    path = Path(uri)
    if not path.is_absolute() or not path.is_file():
        raise NotFound("the photo's file is not on this server")
    return imaging.read_file(path, engine.settings.max_file_bytes)


def face_crop(engine: Engine, face_id: int) -> bytes:
    """A square JPEG of the face with a margin, cut from its photo's file."""
    photo_id, box = face_photo(engine, face_id)
    record = photo_record(engine, photo_id)
    rgb = imaging.decode(
        photo_bytes(engine, record["uri"]), max_pixels=engine.settings.max_pixels
    ).rgb
    x1, y1, x2, y2 = box
    side = int(max(x2 - x1, y2 - y1) * 1.5)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    left, top = max(0, cx - side // 2), max(0, cy - side // 2)
    crop = rgb[top : top + side, left : left + side]
    image = Image.fromarray(crop)
    image.thumbnail((CROP_SIDE * 2, CROP_SIDE * 2))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


def photo_jpeg(engine: Engine, photo_id: int, max_side: int = 1600) -> bytes:
    """The photo, EXIF-oriented (as its boxes are), as a JPEG no larger than ``max_side``."""
    record = photo_record(engine, photo_id)
    rgb = imaging.decode(
        photo_bytes(engine, record["uri"]), max_pixels=engine.settings.max_pixels
    ).rgb
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()
