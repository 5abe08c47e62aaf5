"""Settings, built once at the edge (CLI, API, ``countenance.open``) and passed down.

Every setting has a default and a description. The environment overrides the defaults with
``COUNTENANCE_<NAME>`` (e.g. ``COUNTENANCE_WORKERS=2``); ``COUNTENANCE_CONFIG`` may name a TOML
file whose ``[countenance]`` table does the same. Nothing here is read at import time.

Example::

    settings = Settings.from_env(data_dir="photos-db", workers=2)
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from countenance.errors import InvalidArgument


def _setting(default: Any, description: str, *, secret: bool = False) -> Any:
    # a secret stays out of the settings' repr (and so out of logs and tracebacks)
    return field(default=default, repr=not secret, metadata={"description": description})


@dataclass(frozen=True)
class Settings:
    """Configuration of one engine. See each field's ``description`` metadata."""

    data_dir: Path = _setting(Path("countenance-data"), "Folder holding the catalog and index.")
    catalog_url: str | None = _setting(
        None, "SQLAlchemy URL of the catalog; default: SQLite in data_dir."
    )
    index_backend: str = _setting("faiss", "Vector index backend: faiss, milvus or exact.")
    index_uri: str | None = _setting(
        None, "Milvus URI (http://host:19530) for a cluster; default: Milvus Lite in data_dir."
    )
    index_type: str | None = _setting(
        None,
        "Index type of a Milvus server's collection: HNSW (the default), IVF_FLAT, FLAT or"
        " AUTOINDEX; it takes effect when the collection is created. Milvus Lite is exact (FLAT).",
    )
    index_token: str | None = _setting(
        None,
        "Credentials of a Milvus server with authentication: user:password or an API key;"
        " default: none. A secret: never logged.",
        secret=True,
    )
    approx_threshold: int = _setting(
        200_000, "Gallery size past which the FAISS index turns approximate (exact to HNSW)."
    )
    ivfpq_threshold: int = _setting(
        100_000_000,
        "Gallery size past which the FAISS index holds compressed codes (HNSW to IVF,"
        " ~60 bytes of RAM per 128-d face; the float vectors are memory-mapped from disk). Before"
        " that, index_memory_gb decides: HNSW stays while it fits.",
    )
    index_memory_gb: float = _setting(
        8.0, "RAM the FAISS index may take; a gallery that would exceed it moves to IVF."
    )
    target_recall: float = _setting(
        0.99, "Recall@10 the approximate index is tuned to reach against exact search."
    )
    max_file_bytes: int = _setting(64 * 1024 * 1024, "Largest photo file accepted, in bytes.")
    max_pixels: int = _setting(
        64_000_000, "Largest photo accepted, in pixels (guards against decompression bombs)."
    )
    model: str = _setting(
        "faceplugin",
        "Face model pipeline of a new store, by name (countenance models list). A store keeps"
        " the space it was built in until `countenance models use NAME` re-embeds it.",
    )
    model_dir: Path | None = _setting(
        None,
        "Folder the model files are installed in (countenance models install); default:"
        " ~/.local/share/countenance/models.",
    )
    device: str = _setting(
        "auto", "Where ONNX models run: auto (CUDA when onnxruntime-gpu sees a GPU), cpu, cuda."
    )
    model_threads: int = _setting(
        0, "CPU threads per ONNX model session; 0: ONNX Runtime's choice (one per core)."
    )
    detector: str = _setting(
        "auto",
        "Face detector: auto (the model pipeline's own: rfb320 for faceplugin, hog for dlib),"
        " rfb320 (ONNX, finds small and turned faces), hog (dlib, frontal) or cnn (dlib MMOD,"
        " slow).",
    )
    cnn_fallback: bool = _setting(
        True, "Run dlib's CNN detector on a photo where the first detector finds no face."
    )
    detect_max_side: int = _setting(
        1600, "Photos are downscaled so their longest side is at most this for detection."
    )
    cnn_max_side: int = _setting(
        640, "Longest side of the photo the CNN fallback sees (its cost grows with pixels)."
    )
    embed_views: int = _setting(
        4,
        "Views averaged per face: 1 (the aligned chip) or 4 (also its mirror and a wider"
        " framing with its mirror: fewer errors, about 3x slower ingest).",
    )
    age_estimator: str | None = _setting(
        "auto",
        "Age estimator: auto (the model pipeline's own: ssrnet for faceplugin, none for dlib),"
        " none, ssrnet, or an import path package.module:Class of an AgeEstimator. Faces it"
        " puts under min_age plus age_margin are skipped as minor.",
    )
    min_age: int = _setting(18, "Faces of people younger than this are never indexed.")
    age_margin: float = _setting(
        5.0, "Years added to min_age before trusting an age estimate (estimates err)."
    )
    min_face_px: int = _setting(
        20, "Faces whose box is narrower than this many pixels are skipped as too small."
    )
    min_sharpness: float = _setting(
        2.0, "Faces whose aligned crop has less Laplacian variance than this are skipped as blurry."
    )
    umask: str = _setting(
        "077",
        "Octal mask for the files and folders countenance writes (the catalog holds every"
        " face's embedding): 077 keeps them to their owner; 027 lets the owner's group read.",
    )
    max_retention_days: int = _setting(
        0,
        "Longest any face is kept, whatever its source says (e.g. 1095: three years, as under"
        " BIPA); 0: no global limit.",
    )
    require_case: bool = _setting(
        True, "Searches must name a case reference as well as an actor and a purpose."
    )
    search_rate_per_minute: int = _setting(
        30, "Searches one actor may run in any minute (0: no limit)."
    )
    max_false_leads: float = _setting(
        10.0,
        "Strangers one search may be expected to return, at most: the least similarity a"
        " lead needs rises with the gallery so that gallery size x false-match rate stays under"
        " this (at 10^6 faces, 10 puts the floor at the strong band's edge).",
    )
    alert_webhook: str | None = _setting(
        None,
        "URL each watch alert is POSTed to (JSON) once its ingest batch commits; default none."
        " The operator's own endpoint: it may be on a private network.",
    )
    alert_secret: str | None = _setting(
        None,
        "Key signing each webhook body (X-Countenance-Signature: sha256=HMAC-SHA256 hex).",
        secret=True,
    )
    watch_max_days: int = _setting(365, "Longest a watch may run before it expires, in days.")
    workers: int = _setting(
        0,
        "Ingest worker processes (on a cluster: Ray actors); 0 means one per CPU core (on a"
        " cluster: one per CPU of the cluster, or per GPU where it has GPUs).",
    )
    cluster: str | None = _setting(
        None,
        "Ray cluster that ingest analyses photos on: ray://HOST:PORT (Ray Client), HOST:PORT"
        " (its GCS, from a node of the cluster) or auto; default: none (local processes).",
    )
    top: int = _setting(10, "Matches returned per probe face by default.")
    max_upload_bytes: int = _setting(
        20 * 1024 * 1024, "Largest request body the server accepts (photo uploads), in bytes."
    )
    api_rate_per_minute: int = _setting(
        600, "Requests one API key may make to /v1 in any minute (0: no limit)."
    )
    trusted_proxy: str | None = _setting(
        None,
        "Address(es) of the TLS proxy in front of the server (comma-separated, * for any):"
        " its X-Forwarded-Proto/For are believed and session cookies are always Secure;"
        " default: none (cookies are Secure only over https).",
    )
    search_workers: int = _setting(
        1,
        "Processes the server analyses probe photos in (a pipeline runs one analysis at a time"
        " per process); 1: in the server process.",
    )
    keep_probes: bool = _setting(
        False, "The server keeps uploaded probe photos in data_dir/probes (default: memory only)."
    )
    ingest_batch: int = _setting(
        64,
        "Ingest stores photos in batches of at most this many, each batch one transaction"
        " with its audit event (a crash loses at most the batch being stored; the next run"
        " stores it again).",
    )
    ingest_batch_seconds: float = _setting(
        5.0, "A batch is also stored once it has waited this long, so progress is kept."
    )
    index_save_seconds: float = _setting(
        30.0,
        "During ingest, the index is saved at least this often (crash recovery is by"
        " repair from the catalog either way).",
    )
    # collecting (manifests, sites, archives) ------------------------------------------------
    user_agent: str = _setting(
        "countenance/0.1 (operator contact not set: set COUNTENANCE_USER_AGENT)",
        "User-Agent sent with every fetch; name a contact (URL or e-mail) so site owners can"
        " reach the operator. robots.txt rules are matched on its first word.",
    )
    fetch_timeout_s: float = _setting(20.0, "Seconds to connect, or to wait for any read.")
    fetch_deadline_s: float = _setting(
        120.0, "Longest one fetch may take in all, however slowly the server sends."
    )
    fetch_retries: int = _setting(
        3, "Retries of a fetch after a connection error, HTTP 5xx or 429, with back-off."
    )
    fetch_backoff_s: float = _setting(
        1.0, "First back-off before a retry, in seconds; doubled at each retry."
    )
    fetch_retry_after_max_s: float = _setting(
        60.0, "Longest Retry-After (or robots.txt Crawl-delay) honoured; a longer one fails."
    )
    fetch_min_interval_s: float = _setting(
        0.5, "Least time between two requests to one host, in seconds (politeness)."
    )
    fetch_per_host: int = _setting(2, "Requests in flight to one host at most.")
    fetch_read_ahead: int = _setting(
        4,
        "Photos of a manifest or site fetched ahead, in threads, while one is analysed (0: none).",
    )
    fetch_max_redirects: int = _setting(5, "Redirects followed per fetch, each hop re-checked.")
    max_page_bytes: int = _setting(
        5 * 1024 * 1024, "Largest HTML page (site crawl) or robots.txt read, in bytes."
    )
    crawl_max_pages: int = _setting(200, "Pages a site crawl fetches at most (--max-pages).")
    crawl_max_depth: int = _setting(3, "Links a site crawl follows from its start (--max-depth).")
    archive_max_entries: int = _setting(
        100_000, "Archives with more entries than this are refused whole."
    )
    archive_max_total_bytes: int = _setting(
        16 * 1024**3, "Most bytes an archive's entries may unpack to, in all; the rest is refused."
    )
    archive_max_ratio: float = _setting(
        200.0, "Largest compression ratio of an archive entry (zip bombs exceed it by far)."
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the TOML file in COUNTENANCE_CONFIG, then COUNTENANCE_* variables,
        then ``overrides`` (values that are None are ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_file = env.get("COUNTENANCE_CONFIG")
        if config_file:
            try:
                with open(config_file, "rb") as fh:
                    values.update(tomllib.load(fh).get("countenance", {}))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise InvalidArgument(f"config file {config_file}: {exc}") from exc
        known = {f.name: f for f in fields(cls)}
        if "COUNTENANCE_DATA" in env:  # the CLI's name for it, honoured everywhere
            values["data_dir"] = env["COUNTENANCE_DATA"]
        for name in known:
            raw = env.get(f"COUNTENANCE_{name.upper()}")
            if raw is not None:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(known)
        if unknown:
            raise InvalidArgument(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**{k: _coerce(known[k], v) for k, v in values.items()})

    def describe(self) -> dict[str, str]:
        """Each setting's description, by name."""
        return {f.name: f.metadata["description"] for f in fields(self)}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


SECRETS = tuple(f.name for f in fields(Settings) if not f.repr)
"""Settings that hold credentials (``secret=True``): never logged, never sent to a cluster's
workers."""


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    try:
        if kind in ("Path", "Path | None"):
            return Path(value)
        if kind == "bool":
            if isinstance(value, str):
                word = value.strip().lower()
                if word in {"1", "true", "yes", "on"}:
                    return True
                if word in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(word)
            return bool(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"setting {f.name}: {value!r} is not a valid {kind}") from exc
    return value


def file_mask(settings: Settings) -> int:
    """``settings.umask`` as a number; an invalid one is refused rather than read as 0."""
    try:
        mask = int(str(settings.umask), 8)
    except ValueError:
        raise InvalidArgument(f"umask must be octal, such as 077, not {settings.umask!r}") from None
    if not 0 <= mask <= 0o777:
        raise InvalidArgument(f"umask must be between 000 and 777, not {settings.umask!r}")
    return mask


def keep_private(path: Path, mask: int) -> None:
    """Take from ``path``'s mode what ``mask`` forbids (a store made before the mask, or by
    a process with a looser umask, is tightened; nothing is ever loosened)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & mask:
            path.chmod(mode & ~mask)
    except OSError:  # not ours to change: left as it is
        pass
