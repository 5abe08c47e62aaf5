"""In a real browser: the People page shows the persons a real ingest formed; a person is
opened, named (the name shows on the list), split, told "not this person" for a face and
erased after a review of its faces; and the Alerts page shows the alert a watch raised when
a new photo of its person was uploaded. Also: search results grouped by person, and the
investigator's view, where faces outside their results are placeholders."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import LiveServer, screenshot
from tests.browser.test_ui import sign_in
from tests.conftest import need_faces

pytestmark = pytest.mark.slow

GALLERY = [
    "barack_obama/obama.jpg",
    "barack_obama/obama1.jpg",
    "barack_obama/obama2.jpg",
    "kit_harington/john1.jpeg",
    "kit_harington/john2.jpeg",
    "rose_leslie/img1.jpg",
    "rose_leslie/img2.jpg",
]


@pytest.fixture()
def live(tmp_path: Path, pipeline: Any) -> Iterator[tuple[LiveServer, dict[str, str], Any]]:
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
        keys = {
            r: store.create(f"{r}-ui", r, actor="test")[0]
            for r in ("investigator", "admin", "ingest")
        }
        with LiveServer(create_app(settings, engine=engine, load_models=False)) as server:
            yield server, keys, engine


def person_with(engine: Any, folder: str) -> dict[str, Any]:
    """The one person whose faces are all photos in ``folder`` of small_examples."""
    (found,) = [
        record
        for p in engine.people.list(min_faces=1, hidden=True)
        if (record := engine.people.show(p["id"]))["face_list"]
        and all(f"/{folder}/" in f["uri"] for f in record["face_list"])
    ]
    return found


def watch_problems(page: Any) -> list[str]:
    problems: list[str] = []  # script errors, CSP violations, failed loads
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def crops_loaded(page: Any, selector: str) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll({selector!r})].every("
        "i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )


def test_people_name_split_not_and_erase_with_a_review(browser: Any, live: Any) -> None:
    server, keys, engine = live
    obama, kit = person_with(engine, "barack_obama"), person_with(engine, "kit_harington")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    problems = watch_problems(page)
    try:
        sign_in(page, server.url, keys["admin"])
        page.click("nav >> text=People")
        page.wait_for_selector("#persons li.person")
        cards = page.query_selector_all("#persons li.person")
        assert cards[0].get_attribute("data-person") == str(obama["id"])
        assert "3 faces" in cards[0].inner_text()
        assert f"Person {obama['id']}" in cards[0].inner_text()
        crops_loaded(page, "#persons img")
        screenshot(page, "people")

        # name a person: the name shows on the list
        page.click(f"#persons li[data-person='{obama['id']}'] a.person-name")
        page.wait_for_selector("#faces-form li.face")
        assert len(page.query_selector_all("#faces-form li.face")) == 3
        crops_loaded(page, "#faces-form img")
        page.fill("#name-form input[name=name]", "Barack Obama")
        page.click("#name-form button[type=submit]")
        page.wait_for_selector("#person-name >> text=Barack Obama")
        screenshot(page, "person")
        page.goto(f"{server.url}/people?show=named")
        assert [c.inner_text() for c in page.query_selector_all("a.person-name")] == [
            "Barack Obama"
        ]
        page.goto(f"{server.url}/people?show=unnamed")
        assert "Barack Obama" not in page.inner_text("#persons")

        # split two faces off into a new person
        page.goto(f"{server.url}/people/{obama['id']}")
        ids = [f["face_id"] for f in obama["face_list"]]
        page.check(f"input[name=faces][value='{ids[1]}']")
        page.check(f"input[name=faces][value='{ids[2]}']")
        page.click("#split")
        page.wait_for_url(re.compile(r"/people/\d+$"))
        new = int(page.url.rsplit("/", 1)[-1])
        assert new != obama["id"]
        assert {
            int(li.get_attribute("data-face")) for li in page.query_selector_all("li.face")
        } == {
            ids[1],
            ids[2],
        }
        assert engine.people.show(obama["id"])["faces"] == 1

        # not this person: the face leaves the new person
        page.check(f"input[name=faces][value='{ids[2]}']")
        page.click("#not-this-person")
        page.wait_for_url(f"{server.url}/people/{new}")
        assert [
            int(li.get_attribute("data-face")) for li in page.query_selector_all("li.face")
        ] == [ids[1]]
        assert engine.people.of_faces([ids[2]]) == {ids[2]: None}

        # erase a person: first its faces are shown for review, then it is erased and gone
        page.goto(f"{server.url}/people/{kit['id']}")
        page.click("#erase-person")
        page.wait_for_selector("#erase-review")
        assert len(page.query_selector_all("#faces-form li.face")) == 2
        assert page.query_selector("#faces-form input[type=checkbox]") is None
        crops_loaded(page, "#faces-form img")
        screenshot(page, "person-erase-review")
        page.fill("#erase-review input[name=reason]", "Art. 17 request UI-19")
        page.check("#erase-review input[name=confirm]")
        page.click("#erase-confirm")
        page.wait_for_selector("#receipt")
        assert "Erased 2 faces" in page.inner_text("#receipt")
        assert page.query_selector(f"#persons li[data-person='{kit['id']}']") is None
        screenshot(page, "person-erased")
        assert problems == [], problems
        gone = page.goto(f"{server.url}/people/{kit['id']}")
        assert gone.status == 404 and "no person" in page.content()
    finally:
        context.close()


def test_a_watch_then_an_upload_shows_an_alert(browser: Any, live: Any) -> None:
    server, keys, _engine = live
    faces = need_faces("small_examples")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    problems = watch_problems(page)
    try:
        sign_in(page, server.url, keys["investigator"])
        page.click("nav >> text=Alerts")
        page.wait_for_selector("#watch-form")
        assert "No alert yet" in page.inner_text("#alerts")
        page.set_input_files("#watch-form input[name=photo]", str(faces / "barack_obama/obama.jpg"))
        page.fill("#watch-form input[name=purpose]", "find a missing person")
        page.fill("#watch-form input[name=case]", "CASE-UI-19")
        page.click("#watch-form button[type=submit]")
        page.wait_for_selector("#watches tr[data-watch]")
        assert "CASE-UI-19" in page.inner_text("#watches")

        # a new photo of the person arrives (an ingest key's upload), and a stranger's
        uploader = browser.new_context()
        other = uploader.new_page()
        sign_in(other, server.url, keys["ingest"])
        other.goto(f"{server.url}/sources")
        other.set_input_files(
            "input[name=photos]",
            [str(faces / "barack_obama/obama3.jpg"), str(faces / "alex_lacamoire/img1.jpg")],
        )
        other.click("button:text-is('Upload')")
        other.wait_for_selector("#jobs tr[data-job] >> text=done", timeout=120_000)
        uploader.close()

        deadline = time.monotonic() + 30
        while not page.query_selector("#alerts li.alert") and time.monotonic() < deadline:
            page.reload()
        alerts = page.query_selector_all("#alerts li.alert")
        assert len(alerts) == 1
        assert "obama3.jpg" in alerts[0].inner_text() and "CASE-UI-19" in alerts[0].inner_text()
        crops_loaded(page, "#alerts img")  # the alert's face is the owner's to see
        screenshot(page, "alerts")

        page.once("dialog", lambda d: d.accept())
        page.click("#watches button.danger")
        page.wait_for_selector("text=No watch.")
        assert "No alert yet" in page.inner_text("#alerts")
        assert problems == [], problems
    finally:
        context.close()


def test_search_results_are_grouped_by_person(browser: Any, live: Any) -> None:
    server, keys, engine = live
    obama = person_with(engine, "barack_obama")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    problems = watch_problems(page)
    try:
        sign_in(page, server.url, keys["investigator"])
        # before any search, an investigator sees persons but none of their faces
        page.goto(f"{server.url}/people")
        assert page.query_selector("#persons img") is None
        assert page.query_selector("#persons .placeholder") is not None
        page.goto(f"{server.url}/search")
        page.set_input_files(
            "#photo", str(need_faces("small_examples", "barack_obama", "obama3.jpg"))
        )
        page.wait_for_selector("#boxes .box.picked", timeout=60_000)
        page.fill("input[name=purpose]", "find the subject of the tip")
        page.fill("input[name=case]", "CASE-UI-2")
        page.click("#search-button")
        page.wait_for_selector("table.by-person tr[data-person]", timeout=60_000)
        first = page.query_selector("table.by-person tr[data-person]")
        assert first.get_attribute("data-person") == str(obama["id"])
        assert "people" in first.inner_text() and "3 · 3" in first.inner_text()
        screenshot(page, "search-by-person")
        # the faces the search returned are now the investigator's to see on the person page
        first.query_selector("a").click()
        page.wait_for_selector("#faces-form li.face")
        assert page.query_selector_all("#faces-form img")
        crops_loaded(page, "#faces-form img")
        assert problems == [], problems
    finally:
        context.close()
