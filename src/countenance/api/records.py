"""Read-only views of catalog rows the server shows (read through the catalog) and the face
crops it cuts.

Example::

    photo = photo_record(engine, 12)          # uri, size, source, ingested_at, faces
    jpeg = face_crop(engine, face_id=40)      # bytes of a JPEG around the face
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from countenance import imaging
from countenance.engine import Engine
from countenance.errors import NotFound

CROP_SIDE = 160  # pixels of the square crop shown in a lead's card


def photo_record(engine: Engine, photo_id: int) -> dict[str, Any]:
    """A stored photo with its source and every face in it; NotFound when it is gone."""
    return engine.catalog.photo_record(photo_id)


def photo_dates(engine: Engine, photo_ids: set[int]) -> dict[int, str | None]:
    """When each photo was ingested (the date a lead shows)."""
    if not photo_ids:
        return {}
    return engine.catalog.photo_dates(photo_ids)


def face_photo(engine: Engine, face_id: int) -> tuple[int, list[int]]:
    """The photo id and box of a stored face; NotFound when it is gone."""
    photo_id, box = engine.catalog.face_photo(face_id)
    return photo_id, box.as_list()


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
