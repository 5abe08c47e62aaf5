"""In a real browser: sign in with a key, drop a real probe photo, see its faces drawn, pick
one, search, and see at least one correct lead; the other pages render for their roles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import LiveServer, screenshot
from tests.conftest import need_faces

pytestmark = pytest.mark.slow

GALLERY = [
    "joe_biden/biden.jpg",
    "barack_obama/obama.jpg",
    "kit_harington/john1.jpeg",
    "rose_leslie/img1.jpg",
]


@pytest.fixture()
def live(tmp_path: Path, pipeline: Any) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    from countenance.config import Settings
    from countenance.engine import Engine
    from countenance.server import create_app
    from countenance.sources.folder import FileListSource

    faces = need_faces("small_examples")
    settings = Settings(data_dir=tmp_path / "data", workers=1)
    with Engine(settings, pipeline=pipeline) as engine:
        engine.add_source("people", basis="consent", actor="test")
        engine.ingest(FileListSource([faces / p for p in GALLERY], root=faces), source="people")
        store = engine.catalog.key_store(engine.audit)
        keys = {r: store.create(f"{r}-ui", r, actor="test")[0] for r in ("investigator", "admin")}
        with LiveServer(create_app(settings, engine=engine, load_models=False)) as server:
            yield server, keys


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_sign_in_search_and_see_a_correct_lead(browser: Any, live: Any) -> None:
    server, keys = live
    probe = need_faces("small_examples", "joe_biden", "biden2.jpg")
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    page = context.new_page()
    problems: list[str] = []  # script errors, CSP violations, failed loads
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(f"{server.url}/search")
        assert "/login" in page.url  # signed out: sent to sign in
        sign_in(page, server.url, keys["investigator"])
        assert page.url.endswith("/search")
        cookie = next(c for c in context.cookies() if c["name"] == "countenance_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        page.set_input_files("#photo", str(probe))
        page.wait_for_selector("#boxes .box.picked", timeout=60_000)
        assert "face" in page.inner_text("#faces-note")
        page.fill("input[name=purpose]", "find the subject of the tip")
        page.fill("input[name=case]", "CASE-UI-1")
        screenshot(page, "search-form")
        page.click("#search-button")
        page.wait_for_selector("li.lead", timeout=60_000)

        leads = page.query_selector_all("li.lead")
        photos = [lead.get_attribute("data-photo") or "" for lead in leads]
        assert photos[0].endswith("biden.jpg"), photos
        first = leads[0]
        assert "people" in first.inner_text()
        assert first.query_selector(".band").inner_text() in {"strong", "possible"}
        page.wait_for_function(
            "() => { const i = document.querySelector('li.lead img'); "
            "return i.complete && i.naturalWidth > 0 }",
            timeout=30_000,
        )  # the lead's face crop loaded (a timeout fails the test)
        assert "biden.jpg" in first.inner_text()  # the lead names its photo
        screenshot(page, "search-leads")

        first.query_selector("a").click()
        page.wait_for_selector(".stage.photo .box")
        page.wait_for_function(
            "() => { const i = document.querySelector('.stage.photo img'); "
            "return i.complete && i.naturalWidth > 0 }"
        )
        screenshot(page, "photo-view")
        assert not problems, problems
    finally:
        context.close()


def test_admin_pages_render(browser: Any, live: Any) -> None:
    server, keys = live
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    page = context.new_page()
    try:
        sign_in(page, server.url, keys["admin"])
        for path, text in [
            ("/sources", "people"),
            ("/policy", "excluded jurisdictions"),
            ("/erasures", "Erasure requests"),
            ("/audit", "Hash chain intact"),
        ]:
            page.goto(f"{server.url}{path}")
            assert text in page.content(), path
            screenshot(page, path.strip("/"))
        # upload a photo into the source: the job's progress is polled until it is done
        page.goto(f"{server.url}/sources")
        extra = need_faces("small_examples", "barack_obama", "obama1.jpg")
        page.set_input_files("input[name=photos]", str(extra))
        page.click("button:text-is('Upload')")
        page.wait_for_selector("#jobs tr[data-job] >> text=done", timeout=120_000)
        assert "1 photos, 1 faces" in page.inner_text("#jobs")
        screenshot(page, "sources-after-upload")
        page.goto(f"{server.url}/policy")
        page.fill("input[name=code]", "FR")
        page.fill("input[name=reason]", "test exclusion")
        page.click("form.card button[type=submit]")
        page.wait_for_selector("text=Excluded FR")
    finally:
        context.close()
