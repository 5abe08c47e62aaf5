"""Subject access (GDPR Art. 15): what countenance holds about one person, as JSON and HTML.

The engine gathers an :class:`AccessReport` (faces matching the person's selfie, their photos,
sources, dates, and the audited searches that returned them); :func:`write_access_report`
writes it as ``subject-access.json`` for machines and ``subject-access.html`` for the person.

The HTML page is one self-contained file a layperson can open anywhere: inline CSS, no
JavaScript, no links, fonts or images. Photos are named by their location, never embedded,
so the page carries no more personal data than the JSON. Every value is escaped.

Example::

    report = AccessReport(generated_at="2024-05-01T12:00:00Z", requested_by="dpo@example.org",
                          probe_sha256="9f86...", min_similarity=0.6, faces=[], sources=[])
    json_path, html_path = write_access_report(report, Path("out/request-17"))
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from countenance.errors import InvalidArgument
from countenance.files import write_private

JSON_NAME = "subject-access.json"
HTML_NAME = "subject-access.html"

NOTHING_HELD = (
    "countenance holds no face that matches the person in the supplied photo "
    "at or above the similarity threshold stated above."
)
"""The sentence the HTML page shows when the report lists no faces."""

_MISSING = "—"  # shown in a table cell for a value that was not recorded


@dataclass(frozen=True, slots=True)
class HeldFace:
    """One stored face that matched the probe, with where it came from and who searched it.

    ``similarity`` is cosine in [-1, 1]; ``box`` is ``[x1, y1, x2, y2]`` in pixels of the
    original photo (x2/y2 exclusive); dates are ISO 8601 strings; each entry of ``searches``
    is an audited search that returned this face: ``{"seq", "at", "actor", "purpose",
    "case_ref"}``; ``also_at`` lists where near-duplicates of its photo were found (each
    copy's page URL, else its location), held as links to this photo and not embedded again.

    Example: ``HeldFace(face_id=4, similarity=0.83, band="strong", box=[10, 20, 110, 140],
    photo_id=2, photo="photos/beach.jpg", page_url=None, source="staff", lawful_basis="consent",
    jurisdiction="EU", ingested_at="2024-01-02T09:00:00Z", expires_at=None, searches=[])``.
    """

    face_id: int
    similarity: float
    band: str | None
    box: list[int]
    photo_id: int
    photo: str
    page_url: str | None
    source: str
    lawful_basis: str
    jurisdiction: str | None
    ingested_at: str
    expires_at: str | None
    searches: list[dict[str, Any]]
    also_at: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The face as plain JSON types, e.g. ``{"face_id": 4, "similarity": 0.83, ...}``."""
        return {
            "face_id": self.face_id,
            "similarity": self.similarity,
            "band": self.band,
            "box": list(self.box),
            "photo_id": self.photo_id,
            "photo": self.photo,
            "page_url": self.page_url,
            "source": self.source,
            "lawful_basis": self.lawful_basis,
            "jurisdiction": self.jurisdiction,
            "ingested_at": self.ingested_at,
            "expires_at": self.expires_at,
            "searches": [dict(search) for search in self.searches],
            "also_at": list(self.also_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeldFace:
        """The inverse of :meth:`to_json`: ``HeldFace.from_json(face.to_json()) == face``."""
        return cls(
            face_id=data["face_id"],
            similarity=data["similarity"],
            band=data["band"],
            box=list(data["box"]),
            photo_id=data["photo_id"],
            photo=data["photo"],
            page_url=data["page_url"],
            source=data["source"],
            lawful_basis=data["lawful_basis"],
            jurisdiction=data["jurisdiction"],
            ingested_at=data["ingested_at"],
            expires_at=data["expires_at"],
            searches=[dict(search) for search in data["searches"]],
            also_at=list(data.get("also_at", [])),  # reports written before it had none
        )


@dataclass(frozen=True, slots=True)
class AccessReport:
    """Everything held about the person in one probe photo, at or above ``min_similarity``.

    ``probe_sha256`` identifies the supplied photo without storing it; ``sources`` lists the
    sources the faces came from, each ``{"name", "lawful_basis", "consent_ref",
    "jurisdiction", "licence", "retention_days"}``.

    Example::

        report = AccessReport(generated_at="2024-05-01T12:00:00Z", requested_by="dpo",
                              probe_sha256="9f86...", min_similarity=0.6, faces=[], sources=[])
        assert AccessReport.from_json(report.to_json()) == report
    """

    generated_at: str
    requested_by: str
    probe_sha256: str
    min_similarity: float
    faces: list[HeldFace]
    sources: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types, the body of ``subject-access.json``."""
        return {
            "generated_at": self.generated_at,
            "requested_by": self.requested_by,
            "probe_sha256": self.probe_sha256,
            "min_similarity": self.min_similarity,
            "faces": [face.to_json() for face in self.faces],
            "sources": [dict(source) for source in self.sources],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccessReport:
        """The inverse of :meth:`to_json`, e.g. to read back a ``subject-access.json``."""
        return cls(
            generated_at=data["generated_at"],
            requested_by=data["requested_by"],
            probe_sha256=data["probe_sha256"],
            min_similarity=data["min_similarity"],
            faces=[HeldFace.from_json(face) for face in data["faces"]],
            sources=[dict(source) for source in data["sources"]],
        )


def write_access_report(report: AccessReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/subject-access.json`` and ``out_dir/subject-access.html``.

    ``out_dir`` is created if missing; an existing ``out_dir`` that is not an empty folder
    is refused with :class:`InvalidArgument`, so nothing is ever overwritten. Each file is
    written to a temp file and renamed into place, so a crash leaves no half-written report.
    Returns ``(json_path, html_path)``.

    Example::

        json_path, html_path = write_access_report(report, Path("out/request-17"))
    """
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise InvalidArgument(f"{out_dir} exists and is not a folder")
        if any(out_dir.iterdir()):
            raise InvalidArgument(f"{out_dir} is not empty; choose a new or empty folder")
    # Render both before touching the disk, so a bad value cannot leave one file without the other.
    body = json.dumps(report.to_json(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    page = render_html(report)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(f"cannot create {out_dir}: {exc}") from exc
    json_path = out_dir / JSON_NAME
    html_path = out_dir / HTML_NAME
    _write_atomic(json_path, body)
    _write_atomic(html_path, page)
    return json_path, html_path


def render_html(report: AccessReport) -> str:
    """The report as one self-contained HTML page (inline CSS; no scripts, links or images).

    Example: ``Path("report.html").write_text(render_html(report), encoding="utf-8")``.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>What countenance holds about you</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<h1>What countenance holds about you</h1>",
        _intro(report),
        "<h2>Where the photos came from</h2>",
        _sources_table(report.sources),
        "<h2>Faces that match you</h2>",
    ]
    if not report.faces:
        parts.append(f'<p class="nothing">{_e(NOTHING_HELD)}</p>')
    else:
        parts.append(_faces_table(report.faces))
        parts.append("<h2>Searches that returned these faces</h2>")
        parts.extend(_searches_section(face) for face in report.faces)
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _intro(report: AccessReport) -> str:
    count = len(report.faces)
    found = "no faces" if count == 0 else f"{count} face{'' if count == 1 else 's'}"
    text = (
        "<p>This report lists what countenance, a face-search system, holds that matches the "
        "person in the photo supplied with this request. A face is listed when its similarity "
        f"to that photo is at least <strong>{_e(_number(report.min_similarity))}</strong>. "
        "Similarity runs from -1 to 1; higher means the two faces look more alike. "
        f"This search found <strong>{_e(found)}</strong>.</p>\n"
    )
    if count:
        text += (
            "<p>For each face it shows the photo it was found in (by location only; the photos "
            "themselves are not part of this page), where that photo came from and on what "
            "legal basis, when it was stored and when it is due to be deleted, and every "
            "recorded search that returned it.</p>\n"
        )
    return text + (
        '<dl class="meta">'
        f"<dt>Made on</dt><dd>{_e(report.generated_at)}</dd>"
        f"<dt>Requested by</dt><dd>{_e(report.requested_by)}</dd>"
        "<dt>Fingerprint (SHA-256) of the supplied photo</dt>"
        f"<dd><code>{_e(report.probe_sha256)}</code></dd>"
        "</dl>"
    )


def _sources_table(sources: Sequence[Mapping[str, Any]]) -> str:
    if not sources:
        return "<p>No sources are listed.</p>"
    rows = [
        [
            source.get("name"),
            source.get("lawful_basis"),
            source.get("consent_ref"),
            source.get("jurisdiction"),
            source.get("licence"),
            _retention(source.get("retention_days")),
        ]
        for source in sources
    ]
    headers = ["Source", "Lawful basis", "Consent reference", "Jurisdiction", "Licence"]
    return _table([*headers, "Kept for"], rows)


def _faces_table(faces: Sequence[HeldFace]) -> str:
    rows = []
    for face in faces:
        location = _e(face.photo)
        if face.page_url:
            location += f'<br><span class="note">found on page: {_e(face.page_url)}</span>'
        for copy in face.also_at:
            location += f'<br><span class="note">a copy found at: {_e(copy)}</span>'
        rows.append(
            [
                _e(face.face_id),
                f"<code>{location}</code>",
                _e(face.source),
                _e(_box(face.box)),
                _e(_number(face.similarity)),
                _cell(face.band),
                _cell(face.ingested_at),
                _cell(face.expires_at or "no date set"),
            ]
        )
    headers = ["Face", "Photo location", "Source", "Position in photo (pixels)", "Similarity"]
    return _table([*headers, "Match band", "Stored on", "Due for deletion"], rows, escaped=True)


def _searches_section(face: HeldFace) -> str:
    heading = f'<h3>Face {_e(face.face_id)} <span class="note">({_e(face.photo)})</span></h3>'
    if not face.searches:
        return f"{heading}\n<p>No recorded search has returned this face.</p>"
    rows = [
        [
            search.get("seq"),
            search.get("at"),
            search.get("actor"),
            search.get("purpose"),
            search.get("case_ref"),
        ]
        for search in face.searches
    ]
    return f"{heading}\n" + _table(["Audit entry", "Date", "Who", "Purpose", "Case"], rows)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], escaped: bool = False) -> str:
    """An HTML table; cells are escaped here unless the caller already built them escaped."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if escaped else _cell(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    return _MISSING if value is None or value == "" else _e(value)


def _number(value: float) -> str:
    return f"{value:.3f}"


def _box(box: Sequence[int]) -> str:
    if len(box) != 4:
        return ", ".join(str(v) for v in box)
    x1, y1, x2, y2 = box
    return f"from ({x1}, {y1}) to ({x2}, {y2})"


def _retention(days: Any) -> str | None:
    if days is None:
        return "no limit set"
    return f"{days} day{'' if days == 1 else 's'}"


def _write_atomic(path: Path, text: str) -> None:
    """The report is personal data: readable only by its writer, never seen half-written."""
    write_private(path, text.encode("utf-8"))


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.5; color: #1a1a1a; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.5rem; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #eee; }
code { font-size: 0.9em; }
.note { color: #555; font-size: 0.9em; }
.nothing { font-weight: bold; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; }
"""
