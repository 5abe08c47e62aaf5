"""The one policy: what may enter the store (:meth:`Policy.admit`) and who may search it
(:meth:`Policy.authorize`).

A new control has one home here. Ingest asks ``admit`` about each photo and each of its
faces; every search (and a subject access export by photo, which is a search) asks
``authorize`` first, which reserves the searcher's rate-limit slot before the search runs.

Example::

    policy = Policy(core, settings)
    policy.authorize(actor="alice", purpose="missing person", case="17", location="FR")
    admission = policy.admission(source_info)          # the rules for one ingest run
    refusal = admission.admit(provenance, jurisdiction="CA")   # "excluded", "minors" or None
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from countenance.catalog.audit import MAX_PURPOSE
from countenance.catalog.governance import covers, iso3166
from countenance.config import Settings
from countenance.core import WriteCore
from countenance.errors import InvalidArgument, PolicyDenied
from countenance.ports import Vectors
from countenance.types import Provenance, SourceInfo

EXCLUDED = "excluded"
MINORS = "minors"


@dataclass(frozen=True, slots=True)
class Admission:
    """What may enter one source during one ingest run."""

    info: SourceInfo
    excluded: tuple[str, ...]

    def admit(self, provenance: Provenance, jurisdiction: str | None) -> str | None:
        """Why a photo taken in ``jurisdiction`` is refused (``excluded``: store nothing of
        it; ``minors``: record the photo, never its faces), or None."""
        if any(covers(code, jurisdiction) for code in self.excluded):
            return EXCLUDED
        if self.info.minors or provenance.minors:
            return MINORS
        return None


@dataclass
class Policy:
    """The store's rules, read from its catalog and settings at each decision."""

    core: WriteCore
    settings: Settings

    # what may enter ----------------------------------------------------------------------

    def admit_source(self, info: SourceInfo) -> None:
        """A source may take photos: it is declared (so it has a lawful basis) and not
        retired."""
        if info.retired_at is not None:
            raise PolicyDenied(f"source {info.name!r} was retired on {info.retired_at}")

    def admission(self, info: SourceInfo) -> Admission:
        """The rules for one ingest run into ``info`` (admitted by ``admit_source``): the
        exclusions are read once."""
        return Admission(info, tuple(e["code"] for e in self.core.catalog.exclusions()))

    def suppressed(self, vectors: list[Vectors] | Vectors) -> npt.NDArray[np.bool_]:
        """Which faces are an erased or opted-out person's (they are refused)."""
        return self.core.suppressed(vectors)

    # who may search ----------------------------------------------------------------------

    def authorize(
        self, *, actor: str, purpose: str, case: str | None, location: str | None = None
    ) -> None:
        """Refuse a search without an actor, a purpose or (when required) a case, from an
        excluded location, or past the actor's rate; otherwise reserve its rate slot."""
        missing = [
            name
            for name, value, needed in (
                ("an actor", actor, True),
                ("a purpose", purpose, True),
                ("a case reference", case, self.settings.require_case),
            )
            if needed and not (value and value.strip())
        ]
        for name, value, longest in (("purpose", purpose, MAX_PURPOSE), ("case", case, 200)):
            if value is not None and len(value) > longest:
                raise InvalidArgument(f"{name} must have at most {longest} characters")
        if missing:
            raise PolicyDenied(
                "every search must name " + ", ".join(missing) + " (who searches, why, and"
                " for which case); it is recorded in the audit log"
            )
        if location is not None:
            where = iso3166(location)
            for exclusion in self.core.catalog.exclusions():
                if covers(exclusion["code"], where):
                    raise PolicyDenied(
                        f"searches from {where} are refused: {exclusion['code']} is excluded"
                        + (f" ({exclusion['reason']})" if exclusion["reason"] else "")
                    )
        limit = self.settings.search_rate_per_minute
        if limit > 0:  # last: a search refused for another reason takes no slot
            self.core.catalog.reserve_rate_slot(actor, limit, dt.datetime.now(dt.UTC))
