"""Watchlists: an investigator asks to be told when a person's face turns up again.

A watch holds one template (the principal face of a probe photo, or the mean of a person's
faces) with the edge it alerts at (the space's FMR 1 in 10,000 edge, ``Bands.erase``), its
purpose and case, and an expiry. Every face stored by an ingest after the watch began is
matched against the live watches inside the batch's transaction; a hit is an alert row and
an audit event (action ``alert``, attributed to the watch's owner, purpose and case) in that
same transaction, so a face is never stored without its alerts or alerted twice. Once the
batch commits, each new alert may be POSTed to an operator-set webhook.

Watches past their expiry are deleted with their templates and alerts by the retention run.

Example::

    watches = Watches.live(core)
    with core.change() as change:
        alert_ids = watches.match(change, face_ids, vectors, digests)
    deliver(core, alert_ids, url="http://127.0.0.1:9000/hook")
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence

import httpx
import numpy as np

from countenance.core import Change, WriteCore
from countenance.ports import Vectors

log = logging.getLogger("countenance")

WEBHOOK_TIMEOUT_S = 5.0


class Watches:
    """The live watches of one store at one moment."""

    def __init__(self, core: WriteCore, watches: list[tuple[int, Vectors, float]]) -> None:
        self.core = core
        self.ids = [w[0] for w in watches]
        self.templates = [np.asarray(w[1], dtype=np.float32) for w in watches]
        self.edges = [w[2] for w in watches]
        self._owners: dict[int, dict[str, str | None]] = {}

    @classmethod
    def live(cls, core: WriteCore) -> Watches:
        return cls(core, core.catalog.live_watches(core.space, dt.datetime.now(dt.UTC)))

    def __bool__(self) -> bool:
        return bool(self.ids)

    def match(
        self, change: Change, face_ids: Sequence[int], vectors: Vectors, digests: Sequence[str]
    ) -> list[int]:
        """Alerts for the faces (just stored on ``change``) that match a live watch: one per
        watch and face. Returns the new alerts' ids."""
        if not self.ids or not len(face_ids):
            return []
        x = np.asarray(vectors, dtype=np.float32).reshape(len(face_ids), -1)
        made: list[int] = []
        for watch, template, edge in zip(self.ids, self.templates, self.edges, strict=True):
            best = (x @ template.T).max(axis=1)
            for row in (int(r) for r in np.flatnonzero(best >= edge)):
                face, similarity = int(face_ids[row]), float(best[row])
                alert = self.core.catalog.add_alert(
                    watch, face, digests[row], similarity, conn=change.conn
                )
                owner = self._owner(watch)
                change.record(
                    actor=owner["actor"] or "countenance",
                    action="alert",
                    purpose=owner["purpose"],
                    case_ref=owner["case"],
                    details={
                        "op": "hit",
                        "alert": alert,
                        "watch": watch,
                        "similarity": round(similarity, 4),
                        "photo_sha256": digests[row],
                    },
                    result_face_ids=[face],
                )
                made.append(alert)
        return made

    def _owner(self, watch: int) -> dict[str, str | None]:
        if watch not in self._owners:
            info = self.core.catalog.get_watch(watch)
            self._owners[watch] = {
                "actor": info["actor"],
                "purpose": info["purpose"],
                "case": info["case"],
            }
        return self._owners[watch]


def deliver(
    core: WriteCore,
    alert_ids: Sequence[int],
    *,
    url: str | None,
    secret: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """POST each alert (JSON: ids, case, similarity, photo SHA-256 and source; never a face
    vector) to the operator's webhook; returns how many were delivered. A failure is kept
    on the alert (``delivery_error``) and audited; it never undoes the ingest. With a
    ``secret``, each body is signed: ``X-Countenance-Signature: sha256=<HMAC-SHA256 hex>``."""
    if not url or not alert_ids:
        return 0
    wanted = set(alert_ids)
    alerts = [
        a
        for a in core.catalog.list_alerts(after=min(wanted) - 1, limit=len(wanted) + 1000)
        if a["id"] in wanted
    ]
    delivered = 0
    with httpx.Client(
        timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False, transport=transport, trust_env=False
    ) as client:
        for alert in alerts:
            body = json.dumps(
                {
                    "alert": alert["id"],
                    "watch": alert["watch"],
                    "case": alert["case"],
                    "face_id": alert["face_id"],
                    "photo_id": alert["photo_id"],
                    "photo_sha256": alert["photo_sha256"],
                    "source": alert["source"],
                    "similarity": alert["similarity"],
                    "at": alert["at"],
                },
                sort_keys=True,
            ).encode()
            headers = {"Content-Type": "application/json"}
            if secret:
                mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Countenance-Signature"] = f"sha256={mac}"
            error: str | None = None
            try:
                answer = client.post(url, content=body, headers=headers)
                if not 200 <= answer.status_code < 300:
                    error = f"the webhook answered {answer.status_code}"
            except httpx.HTTPError as exc:
                error = f"the webhook could not be reached: {type(exc).__name__}"
            with core.change() as change:
                core.catalog.alert_delivered(alert["id"], error=error, conn=change.conn)
                change.record(
                    actor="countenance",
                    action="alert",
                    details={"op": "delivery", "alert": alert["id"], "error": error},
                )
            if error is None:
                delivered += 1
            else:
                log.warning("alert %s: %s", alert["id"], error)
    return delivered


def add(
    core: WriteCore,
    template: Vectors,
    *,
    actor: str,
    purpose: str,
    case: str | None,
    expires_at: dt.datetime,
    person: int | None = None,
    probe_sha256: str | None = None,
) -> int:
    """Start a watch (one audited transaction); its id. It alerts at the FMR 1 in 10,000
    edge of the store's space."""
    with core.change() as change:
        watch = core.catalog.add_watch(
            core.space,
            template,
            core.bands.erase,
            actor=actor,
            purpose=purpose,
            case_ref=case,
            expires_at=expires_at,
            person_id=person,
            probe_sha256=probe_sha256,
            conn=change.conn,
        )
        change.record(
            actor=actor,
            action="watch",
            purpose=purpose,
            case_ref=case,
            probe_sha256=probe_sha256,
            details={
                "op": "add",
                "watch": watch,
                "person": person,
                "expires_at": expires_at.isoformat(),
            },
        )
    return watch


def remove(core: WriteCore, watch: int, *, actor: str) -> None:
    """End a watch now: its template and alerts are deleted (audited)."""
    core.catalog.get_watch(watch)  # NotFound
    with core.change() as change:
        core.catalog.remove_watches(ids=[watch], conn=change.conn)
        change.record(actor=actor, action="watch", details={"op": "remove", "watch": watch})


def purge_expired(core: WriteCore, *, actor: str, now: dt.datetime | None = None) -> int:
    """Delete every expired watch with its template and alerts (one audited transaction);
    how many went."""
    at = now or dt.datetime.now(dt.UTC)
    if not core.catalog.any_watch_expired(at):
        return 0
    with core.change() as change:
        gone = core.catalog.remove_watches(expired_at=at, conn=change.conn)
        if gone:
            change.record(actor=actor, action="watch", details={"op": "purge", "watches": gone})
    return len(gone)
