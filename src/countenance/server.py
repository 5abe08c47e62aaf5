"""The app factory: one FastAPI application over one Engine, serving the REST API (``/v1``),
the browser UI (``/``), ``/healthz``, ``/metrics``, ``/openapi.json`` and ``/docs``.

Example::

    app = create_app(Settings.from_env(data_dir="countenance-data"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from countenance.api import errors, people, routes, service
from countenance.api.metrics import CONTENT_TYPE, MetricsMiddleware
from countenance.api.state import ServerState
from countenance.api.uploads import BodyLimit
from countenance.config import Settings
from countenance.engine import Engine
from countenance.vision.pipeline import FacePipeline

THREADS = 128  # worker threads for sync routes (anyio's default is 40)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    pipeline: FacePipeline | None = None,
    load_models: bool = True,
) -> FastAPI:
    """Build the application. With ``engine`` the caller keeps ownership of it (tests);
    otherwise the app opens one on ``settings`` and closes it at shutdown. With
    ``load_models`` the face models load at startup, so the first search is not slow."""
    from countenance.web import admin, pages, search  # the UI: part of the app, its own package
    from countenance.web import people as people_pages

    settings = settings or (engine.settings if engine is not None else Settings.from_env())
    state = ServerState.open(settings, engine=engine, pipeline=pipeline)
    owns_engine = engine is None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # sync routes run in worker threads; searches hold theirs while they wait for the
        # models, so allow more than anyio's 40 lest page loads queue behind a search burst
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        if load_models or settings.search_workers > 1:
            await run_in_threadpool(state.load_models)
        # jobs a stopped server left unfinished run again; the uploads folder is swept
        await run_in_threadpool(service.resume_jobs, state)
        try:
            yield
        finally:
            state.close()
            if owns_engine:
                state.engine.close()

    app = FastAPI(
        title="countenance",
        version=_version(),
        description=(
            "Lawful face search. Every /v1 route needs `Authorization: Bearer KEY`"
            " (`countenance keys create`); errors are"
            ' `{"error": {"code": "...", "message": "..."}}`.'
        ),
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: blank on a machine
        # without internet. /docs is served below from a vendored Swagger UI instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.server = state
    _install_docs(app)
    errors.install(app)
    pages.install(app, always_secure=bool(settings.trusted_proxy))
    app.include_router(routes.router)
    app.include_router(people.router)
    app.include_router(search.router)
    app.include_router(admin.router)
    app.include_router(people_pages.router)
    app.mount("/static", StaticFiles(packages=[("countenance.web", "static")]), name="static")

    # async, so they answer on the event loop even while every worker thread is busy
    # (searches queue for the face models): a liveness probe must not queue behind them
    @app.get("/healthz", include_in_schema=True, summary="Liveness: answers while serving")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "indexed": state.engine.index.count()}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(_request: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    # added innermost first: metrics see every answer, the body limit's 413s included
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def _install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle`` package, nothing from a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="countenance API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


# The UI's own pages load nothing from elsewhere and run no inline script. /docs is Swagger
# UI, whose page starts itself with an inline script: it keeps no CSP of ours.
_CSP = (
    b"default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    b"base-uri 'none'"
)


# files that are the same for everyone: the only answers a browser or proxy may keep
_STATIC = ("/static/", "/docs/assets/")


class SecurityHeaders:
    """Headers every answer carries: no sniffing, no framing, no referrer; a strict
    Content-Security-Policy on everything but the API docs; ``Cache-Control: no-store`` on
    everything but static assets (API answers and pages hold personal data: no disk cache or
    shared proxy may keep them); and on a 405, ``Allow`` with the methods the path answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        docs = path.startswith("/docs")
        static = path.startswith(_STATIC)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if not docs:
                    headers.append((b"content-security-policy", _CSP))
                if not static:
                    headers = [h for h in headers if h[0].lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                if message["status"] == 405 and not any(h[0].lower() == b"allow" for h in headers):
                    headers.append((b"allow", _allowed(scope).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _allowed(scope: Scope) -> str:
    """The methods some route answers on this path: each is tried against the app's routes
    (Starlette's own 405 names only the first matching route's, and the error body's
    handler drops even that). Static files are only ever read."""
    if scope["path"].startswith(_STATIC):
        return "GET, HEAD"
    routes = [r for r in scope["app"].router.routes if not isinstance(r, Mount)]
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        probe = {"type": "http", "path": scope["path"], "root_path": scope.get("root_path", "")}
        probe |= {"method": method, "headers": [], "app": scope["app"]}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return ", ".join(allowed)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("countenance")
    except PackageNotFoundError:
        return "0"
