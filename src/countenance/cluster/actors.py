"""A pool of Ray actors that analyse photos: Ray Data's batch-inference pattern (one actor per
worker, the models loaded once in each, a few photos queued at each actor), fed from the
driver's stream of screened photos.

The driver's stream cannot be a Ray Dataset: what is sent depends on what was already seen
(the same bytes twice, a near-duplicate still in flight, photos already stored), and Ray Data
needs its input up front and does not run under Ray Client (``ray://``). So the driver submits
each photo to the actor with the fewest in flight, ``IN_FLIGHT`` per actor at most, and takes
the results in the order it sent them, as :func:`countenance.ingest.run_analyses` does.

Faults are Ray's to handle: an actor whose process dies is restarted (its models loaded
again) and the photos it held are sent to it again, ``RETRIES`` times at most; a photo that
kills its worker every time is reported like any other photo that failed, and a re-run tries
it again. Nothing is written on the cluster, so a retried photo is never stored twice.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Iterator
from typing import Any, TypeVar

from countenance.config import SECRETS, Settings
from countenance.errors import BackendUnavailable, InvalidArgument
from countenance.ingest import Analysis, Job, PhotoAnalyser
from countenance.types import EmbeddingSpace

log = logging.getLogger("countenance")

RETRIES = 3
"""Times a photo is sent again after its worker died with it."""
IN_FLIGHT = 4
"""Photos queued at each actor: enough to hide a round trip, few enough to keep memory flat."""
CONNECT_TIMEOUT_S = 10.0
"""How long the cluster's address may take to answer."""
READY_TIMEOUT_S = 300.0
"""How long the workers may take to start and load their models."""
CONNECT_ATTEMPTS = 2
"""Connections tried when the cluster's Ray Client server fails to start one."""

T = TypeVar("T")


def cluster_address(value: str) -> str:
    """``value`` if it names a Ray cluster: ``ray://HOST:PORT`` (Ray Client), ``HOST:PORT``
    (the cluster's GCS, from a node of the cluster) or ``auto`` (the cluster this machine
    belongs to)."""
    address = value.strip()
    if address == "auto":
        return address
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise InvalidArgument(f"cluster must be ray://HOST:PORT, HOST:PORT or auto, got {value!r}")
    return address


class Analyser:
    """The actor: one worker's models, loaded once."""

    def __init__(self, settings: Settings) -> None:
        self.analyser = PhotoAnalyser(settings)

    def space(self) -> EmbeddingSpace:
        return self.analyser.pipeline.space

    def analyse(self, data: bytes, name: str) -> Analysis:
        return self.analyser(data, name)

    def pid(self) -> int:
        return os.getpid()


def _ray() -> Any:
    # read when ray is imported: Ray otherwise swaps 127.0.0.1 for the machine's routable
    # address, and a driver pointed at a loopback cluster never reaches it
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(
            f"ingest on a cluster needs Ray: pip install 'countenance[cluster]' ({exc})"
        ) from exc
    return ray


class RayPool:
    """``workers`` actors on the Ray cluster at ``address`` (0: one per CPU of the cluster, or
    per GPU where it has GPUs), each analysing photos with ``settings`` and checked to embed
    into ``space``. A context manager: it connects on entry and lets go of the actors and the
    connection on exit."""

    def __init__(
        self, address: str, workers: int, settings: Settings, space: EmbeddingSpace | None = None
    ) -> None:
        if workers < 0:
            raise InvalidArgument(f"workers must be 0 or more, got {workers}")
        self.address = cluster_address(address)
        # what the workers get: they analyse photos, and need no credentials of this store's
        self.settings = settings.replace(**dict.fromkeys(SECRETS))
        self.requested, self.space = workers, space
        self.actors: list[Any] = []
        self._connected = False

    def __enter__(self) -> RayPool:
        ray = _ray()
        if not ray.is_initialized():
            _reachable(self.address)  # Ray itself would retry a dead address for ever
            self._connect(ray)
            self._connected = True
        try:
            self._start(ray)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self, ray: Any) -> None:
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                ray.init(
                    address=self.address,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    namespace="countenance",
                )
                return
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                # A failed init leaves half a connection in this process (Ray Client's mode
                # switched on), on which every later init fails: undone here.
                ray.shutdown()
                # Ray Client starts a server process for each connection; one that failed
                # to start (ConnectionAbortedError: "failure from server") may start next time.
                if attempt == CONNECT_ATTEMPTS or not isinstance(exc, ConnectionAbortedError):
                    raise BackendUnavailable(
                        f"no Ray cluster at {self.address}: {_first_line(exc)}".rstrip(": ")
                    ) from exc
                log.warning(
                    "the Ray cluster at %s: %s; connecting again", self.address, _first_line(exc)
                )

    def _start(self, ray: Any) -> None:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if self.settings.device != "cpu" else 0
        offered = gpus or int(resources.get("CPU", 0))
        n = self.requested or max(1, offered)
        options: dict[str, Any] = {
            "num_cpus": 1,
            "max_restarts": -1,  # a dead worker always comes back ...
            "max_task_retries": RETRIES,  # ... and each photo it held is tried again, boundedly
        }
        if gpus:
            options["num_gpus"] = 1
        actor = ray.remote(**options)(Analyser)
        self.actors = [actor.remote(self.settings) for _ in range(n)]
        try:
            spaces = ray.get([a.space.remote() for a in self.actors], timeout=READY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as exc:
            raise BackendUnavailable(
                f"the Ray cluster at {self.address} did not start {n} workers within"
                f" {READY_TIMEOUT_S:.0f} s (it offers {offered} {'GPUs' if gpus else 'CPUs'});"
                " ask for fewer workers"
            ) from exc
        except ray.exceptions.RayError as exc:
            raise BackendUnavailable(
                f"the workers of the Ray cluster at {self.address} could not load the models"
                f" (is countenance installed there, with `countenance models install`?): {exc}"
            ) from exc
        wrong = {s for s in spaces if self.space is not None and s != self.space}
        if wrong:
            raise BackendUnavailable(
                f"the cluster's workers embed into {', '.join(sorted(map(str, wrong)))}, this"
                f" store into {self.space}: install the same models on every node"
            )
        log.info(
            "ingest on the Ray cluster at %s: %d workers%s",
            self.address,
            n,
            " (one GPU each)" if gpus else "",
        )

    def __exit__(self, *exc: object) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []
        if self._connected:
            ray.shutdown()
            self._connected = False

    def pids(self) -> list[int]:
        """The process id of each worker (for the fault tests)."""
        ray = _ray()
        return list(ray.get([a.pid.remote() for a in self.actors], timeout=READY_TIMEOUT_S))

    def analyses(self, jobs: Iterator[tuple[T, Job]]) -> Iterator[tuple[T, Analysis]]:
        """Analyse each job on the cluster, yielding ``(tag, analysis)`` in submission order."""
        ray = _ray()
        if not self.actors:
            raise InvalidArgument("the pool is not started: use it as a context manager")
        # Ray Client's advice on sending photos (megabytes of them) as task arguments: they
        # are the work itself, and each goes to the cluster once
        warnings.filterwarnings("ignore", message="More than .* of messages have been created")
        load = [0] * len(self.actors)
        pending: list[tuple[T, int, Any]] = []

        def collect() -> tuple[T, Analysis]:
            tag, i, ref = pending.pop(0)
            load[i] -= 1
            try:
                return tag, ray.get(ref)
            except ray.exceptions.RayError as exc:
                # the worker died with this photo RETRIES + 1 times (or the task failed):
                # reported, and a re-run tries it again
                return tag, Analysis(
                    error=f"the cluster's worker failed on this photo: {_first_line(exc)}",
                    error_reason="worker_died",
                )

        for tag, (data, name) in jobs:
            i = min(range(len(load)), key=load.__getitem__)
            pending.append((tag, i, self.actors[i].analyse.remote(data, name)))
            load[i] += 1
            while len(pending) >= IN_FLIGHT * len(self.actors):
                yield collect()
        while pending:
            yield collect()


def _reachable(address: str) -> None:
    """Refuse a cluster address nothing listens at, within ``CONNECT_TIMEOUT_S``."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise BackendUnavailable(f"no Ray cluster at {address}: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    """What went wrong, in a line: the first, or the last of a remote traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if any(line.startswith("Traceback") for line in lines) else lines[0]
