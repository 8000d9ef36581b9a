"""Every HTML page escapes what it shows: a hostile string in a title, prompt, file name, score or row name comes
out as text, never as markup."""

from __future__ import annotations

import pytest

from terrasynth.pages import render_page

HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


def assert_escaped(page: str) -> None:
    assert ESCAPED in page and HOSTILE not in page


def test_a_template_escapes_by_default():
    page = render_page("study/index.html", title=HOSTILE)
    assert_escaped(page)


def test_demo_page_escapes_prompts_and_files_and_names_its_steps():
    from terrasynth.generate.demo import _page

    rows = [(HOSTILE, HOSTILE, "layouts/a-grid.png", [f"layouts/{HOSTILE}.png"]), (None, "a forest", "g.png", [])]
    page = _page(rows, HOSTILE, 10, "dpm++sde", 12.0)
    assert_escaped(page)
    assert "with 10 steps of\nthe <code>dpm++sde</code> sampler in 12 s" in page and "prompt only" in page


def test_evaluate_report_escapes_title_rows_and_notes(tmp_path):
    from terrasynth.evaluate.report import score, write_report

    rows = {"real vs real (floor)": {"FD": score(1.0)}, HOSTILE: {"FD": score(2.0, extractor=HOSTILE)}}
    written = write_report(tmp_path, {"rows": rows, "floor": "real vs real (floor)", "notes": [HOSTILE]}, title=HOSTILE)
    page = written["report"].read_text()
    assert_escaped(page)
    assert page.count(ESCAPED) >= 4  # title ×2, row name, note


def test_study_report_escapes_file_names_and_score_names(tmp_path):
    pytest.importorskip("scipy")
    from terrasynth.study.report import ImageRecord, RatingRecord, analyse_ratings, write_report

    images = {
        "a" * 64: ImageRecord("a" * 64, "real", f"{HOSTILE}.png", "/r/a.png"),
        "b" * 64: ImageRecord("b" * 64, "synthetic", "b.png", "/f/b.png"),
    }
    ratings = [
        RatingRecord(rater, image_id, images[image_id].truth, answer, 3)
        for rater in ("r1", "r2")
        for image_id, answer in (("a" * 64, "real"), ("b" * 64, "real"))
    ]
    scores = {HOSTILE: {"a" * 64: 0.1, "b" * 64: 0.9}}
    page = write_report(analyse_ratings(ratings, images, scores), tmp_path, scores).read_text()
    assert_escaped(page)


def test_study_pages_escape_the_title(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from tests.study.helpers import ADMIN_PASSWORD, make_study_sets

    from terrasynth.study import passwords
    from terrasynth.study.app import create_app

    real, fake = make_study_sets(tmp_path / "tiles", n_real=2, n_fake=2, size=8)
    app = create_app(
        real, fake, f"sqlite:///{tmp_path / 'study.db'}", passwords.hash_password(ADMIN_PASSWORD), title=HOSTILE
    )
    client = TestClient(app)
    assert_escaped(client.get("/").text)
    admin = client.get("/admin", auth=("admin", ADMIN_PASSWORD))
    assert admin.status_code == 200
    assert_escaped(admin.text)
    script = client.get("/static/study.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
