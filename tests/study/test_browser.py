"""A rater completes a session in a real headless browser (Debian's chromium driven by Playwright) on a phone-sized
screen; the ratings are in the database, and the admin page and its CSV export show them."""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.study.helpers import ADMIN_PASSWORD

from terrasynth.study.app import create_app
from terrasynth.study.db import Rating, StudyImage, open_database

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
TIMEOUT_MS = 15_000


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


def test_a_rater_completes_a_session_and_the_admin_exports_it(
    browser, study_sets, db_url, admin_hash, live_server, tmp_path
):
    server = live_server(create_app(*study_sets, db_url, admin_hash, seed=0))
    context = browser.new_context(**PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Failed resource loads are the API's own answers (a 401 before the session starts), tested elsewhere.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )

    page.goto(server.url)
    page.click("#start")
    page.wait_for_selector("#task:not([hidden])")
    given = []
    deadline = time.monotonic() + 60
    for step in range(8):  # the session has 8 images (4 real, 4 synthetic)
        assert time.monotonic() < deadline, "the session took too long"
        progress = f"{step} / 8"
        page.wait_for_function("t => document.getElementById('progress-text').textContent === t", arg=progress)
        assert page.is_visible("#task") and not page.is_visible("#done")
        page.wait_for_function(
            "() => { const i = document.getElementById('tile'); return i.complete && i.naturalWidth > 0; }"
        )
        assert "real" not in page.get_attribute("#tile", "src") and "synthetic" not in page.get_attribute(
            "#tile", "src"
        )
        if step == 0:  # mark a spot a quarter across and three quarters down
            box = page.locator("#tile").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390  # the tile fits the phone's width
            page.locator("#tile").click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.75})
            assert page.is_visible("#marker")
        assert page.is_disabled("#submit")
        answer = "synthetic" if step % 2 else "real"
        confidence = step % 5 + 1
        page.click(f"#answer-{answer}")
        page.click(f"#confidence-{confidence}")
        page.locator("#submit").scroll_into_view_if_needed()
        if step == 0:
            page.screenshot(path=str(tmp_path / "rater-phone.png"), full_page=True)
        page.click("#submit")
        given.append((answer, confidence))
    page.wait_for_selector("#done:not([hidden])")
    assert page.text_content("#progress-text") == "8 / 8"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    assert not errors, errors

    with open_database(db_url)() as session:
        ratings = list(session.scalars(select(Rating).order_by(Rating.position)))
        truth = dict(session.execute(select(StudyImage.id, StudyImage.truth)).all())
    assert [(r.answer, r.confidence) for r in ratings] == given
    assert len({r.rater_id for r in ratings}) == 1 and len({r.image_id for r in ratings}) == 8
    assert ratings[0].click_x == pytest.approx(0.25, abs=0.02) and ratings[0].click_y == pytest.approx(0.75, abs=0.02)
    assert all(r.click_x is None for r in ratings[1:]) and all(r.response_ms >= 0 for r in ratings)

    # admin: refused without the password, even with the rater's cookie (the context's requests share it)
    assert context.cookies() and context.request.get(f"{server.url}/admin").status == 401
    assert context.request.get(f"{server.url}/admin/export.csv").status == 401
    admin = browser.new_context(http_credentials={"username": "admin", "password": ADMIN_PASSWORD})
    admin.set_default_timeout(TIMEOUT_MS)
    admin_page = admin.new_page()
    assert admin_page.goto(f"{server.url}/admin").status == 200
    assert admin_page.text_content("#n-ratings") == "8"
    export = admin.request.get(f"{server.url}/admin/export.csv")
    assert export.status == 200
    rows = list(csv.DictReader(io.StringIO(export.text())))
    assert sorted((row["image_id"], row["answer"], row["confidence"]) for row in rows) == sorted(
        (r.image_id, r.answer, str(r.confidence)) for r in ratings
    )
    assert all(row["truth"] == truth[row["image_id"]] for row in rows)
    admin.close()
    context.close()
