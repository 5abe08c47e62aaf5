"""Where the near-duplicate threshold comes from: perceptual-hash distances of copies of one
photo, and of distinct photos.

    python benchmarks/phash_distances.py --photos ../shared/faces/lfw

Copies: each photo re-encoded as JPEG at quality 50, 75 and 95, scaled to half and double
size, and saved as PNG; their distance to the original's hash. Distinct: every pair of
different files (byte-distinct) among the photos, as the distribution's low end. Prints JSON;
``countenance.neardup.MAX_DISTANCE`` must sit above every copy and below every distinct pair.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from countenance.neardup import phash


def _variants(data: bytes) -> list[bytes]:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = []
    for quality in (50, 75, 95):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    for scale in (0.5, 2.0):
        buf = io.BytesIO()
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image.resize(size, Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--copies-of", type=int, default=300, help="photos to make copies of")
    args = parser.parse_args()
    files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    hashes: list[int] = []
    copy_distances: list[int] = []
    for n, path in enumerate(files):
        data = path.read_bytes()
        h = phash(data)
        if h is None:
            continue
        hashes.append(h)
        if n < args.copies_of:
            for variant in _variants(data):
                v = phash(variant)
                if v is not None:
                    copy_distances.append(((h ^ v) & ((1 << 64) - 1)).bit_count())
    arr = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    counts = np.zeros(65, dtype=np.int64)
    for i in range(len(arr) - 1):
        d = np.bitwise_count(arr[i + 1 :] ^ arr[i])
        counts += np.bincount(d, minlength=65)
    distinct_min = int(np.nonzero(counts)[0][0]) if counts.any() else None
    print(
        json.dumps(
            {
                "photos": len(hashes),
                "copies": len(copy_distances),
                "copy_distance_max": max(copy_distances, default=None),
                "copy_distance_p99": float(np.percentile(copy_distances, 99))
                if copy_distances
                else None,
                "distinct_pairs": int(counts.sum()),
                "distinct_distance_min": distinct_min,
                "distinct_pairs_at_or_below": {
                    str(d): int(counts[: d + 1].sum()) for d in range(0, 13)
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
