"""What collecting adds to the catalog: per-photo provenance and perceptual hashes, the lookup
of near-duplicates, and the fetch cache behind conditional re-fetches.

A near-duplicate is stored as a photo row of its own (its bytes' SHA-256, its provenance, its
page) with ``duplicate_of`` naming the stored original and no faces. The link is a foreign key
with ON DELETE CASCADE: when the original goes (erasure, retention, exclusion, a retired
source), its duplicates go with it, so no row is left pointing at faces that no longer exist;
a later run that meets a duplicate again ingests it afresh, through the full policy gate
(suppression then refuses an erased person's face).

Example::

    cache = catalog.fetch_cache()
    cache.validators("https://example.org/a.jpg")   # (etag, last_modified) or None
    catalog.near_duplicate_of(signature)            # a stored photo id, or None
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.neardup import Signature, band_probes, bands, hamming, same_photo

if TYPE_CHECKING:
    from countenance.catalog.sql import PhotoRecord


def photo_extras(photo: PhotoRecord) -> dict[str, Any]:
    """The columns of migration 6 for a photo about to be stored."""
    p, sig = photo.provenance, photo.signature
    b: tuple[int | None, ...] = bands(sig.phash) if sig is not None else (None,) * 4
    return {
        "licence": p.licence,
        "consent_ref": p.consent_ref,
        "taken_at": p.taken_at,
        "phash": None if sig is None else sig.phash,
        **{f"phash_b{i}": b[i] for i in range(4)},
        "phash_rgb": None if sig is None else sig.rgb,
        "duplicate_of": photo.duplicate_of,
    }


def near_duplicate_of(db: sa.Engine, sig: Signature) -> int | None:
    """The id of a stored photo that ``sig`` is a copy of (the nearest by hash; always an
    original, never itself a duplicate), or None.

    Candidates come from the indexed bands (see :mod:`countenance.neardup`), so the cost is a
    few index lookups and the rows sharing a band, never a scan of every photo.
    """
    p = s.photos
    wanted = bands(sig.phash)
    where = sa.or_(*(p.c[f"phash_b{i}"].in_(band_probes(wanted[i])) for i in range(4)))
    query = sa.select(p.c.id, p.c.phash, p.c.phash_rgb, p.c.duplicate_of).where(
        where, p.c.phash.is_not(None)
    )
    best: tuple[int, int] | None = None
    with db.connect() as conn:
        for photo_id, other, rgb, original in conn.execute(query):
            stored = Signature(int(other), bytes(rgb or b""))
            if not same_photo(sig, stored):
                continue
            d = hamming(sig.phash, stored.phash)
            if best is None or d < best[0]:
                best = (d, int(original if original is not None else photo_id))
    return None if best is None else best[1]


def photo_id_of(db: sa.Engine, sha256: str) -> int | None:
    """The id of the stored photo with these bytes, or None."""
    with db.connect() as conn:
        found = conn.execute(sa.select(s.photos.c.id).where(s.photos.c.sha256 == sha256))
        value = found.scalar()
    return None if value is None else int(value)


def copies_of(
    db: sa.Engine, photo_ids: Iterable[int], limit: int | None = 50
) -> dict[int, list[str]]:
    """For each stored original, where its near-duplicates were found (each copy's page URL,
    else its URI), at most ``limit`` each (None: all, as subject access must list): the other
    places a matched photo appears."""
    p = s.photos
    wanted = sorted({int(i) for i in photo_ids})
    out: dict[int, list[str]] = {}
    with db.connect() as conn:
        for i in range(0, len(wanted), 900):
            query = (
                sa.select(p.c.duplicate_of, p.c.page_url, p.c.uri)
                .where(p.c.duplicate_of.in_(wanted[i : i + 900]))
                .order_by(p.c.id)
            )
            for original, page_url, uri in conn.execute(query):
                found = out.setdefault(int(original), [])
                where = page_url or uri
                if (limit is None or len(found) < limit) and where not in found:
                    found.append(where)
    return out


def duplicate_count(db: sa.Engine) -> int:
    """How many stored photos are near-duplicates of another."""
    with db.connect() as conn:
        n = conn.execute(
            sa.select(sa.func.count()).where(s.photos.c.duplicate_of.is_not(None))
        ).scalar()
    return int(n or 0)


def _key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


class FetchCache:
    """URL -> the validators (ETag, Last-Modified) of its last successful fetch.

    Validators are handed out only while the photo fetched then is still stored: a photo
    fetched but never stored (the run crashed first, it was refused, later erased) is
    fetched in full again, so a 304 never hides a photo the catalog lacks.

    Example::

        cache.record("https://x.org/a.jpg", etag='"v1"', last_modified=None, sha256=d, status=200)
        cache.validators("https://x.org/a.jpg")   # ('"v1"', None)
    """

    def __init__(self, db: sa.Engine) -> None:
        self._db = db

    def validators(self, url: str) -> tuple[str | None, str | None] | None:
        c, p = s.fetch_cache, s.photos
        query = (
            sa.select(c.c.etag, c.c.last_modified)
            .select_from(c.join(p, p.c.sha256 == c.c.sha256))
            .where(c.c.url_sha256 == _key(url))
        )
        with self._db.connect() as conn:
            row = conn.execute(query).first()
        if row is None or (row[0] is None and row[1] is None):
            return None
        return row[0], row[1]

    def record(
        self,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        sha256: str | None,
        status: int,
    ) -> None:
        c = s.fetch_cache
        values = {
            "url": url,
            "etag": _clean(etag),
            "last_modified": _clean(last_modified),
            "sha256": sha256,
            "status": status,
            "fetched_at": dt.datetime.now(dt.UTC),
        }
        key = _key(url)
        with self._db.begin() as conn:
            updated = conn.execute(c.update().where(c.c.url_sha256 == key).values(**values))
            if not updated.rowcount:
                conn.execute(c.insert().values(url_sha256=key, **values))

    def touch(self, url: str, status: int) -> None:
        """Note a fetch that changed nothing (a 304)."""
        c = s.fetch_cache
        with self._db.begin() as conn:
            conn.execute(
                c.update()
                .where(c.c.url_sha256 == _key(url))
                .values(status=status, fetched_at=dt.datetime.now(dt.UTC))
            )


def _clean(value: str | None) -> str | None:
    # a header is sent back verbatim: refuse what no server should send (NUL, CR, LF)
    if value is None or any(ch in value for ch in "\x00\r\n") or len(value) > 1000:
        return None
    return value
