"""The study app in-process (Starlette's TestClient): a session's flow, what a rater's browser may and may not
learn, request validation (404 / 409 / 422 / 401) and the admin export."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from tests.study.helpers import ADMIN_PASSWORD

from terrasynth.errors import InputError
from terrasynth.study.app import RATER_COOKIE, RatingIn, create_app
from terrasynth.study.db import Rating, open_database
from terrasynth.study.passwords import hash_password, verify_password


def basic(password: str, user: str = "admin") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def app(study_sets, db_url, admin_hash):
    return create_app(*study_sets, db_url, admin_hash, seed=0)


@pytest.fixture
def rater(app) -> TestClient:
    """A client with a started session."""
    client = TestClient(app)
    assert client.post("/api/session").status_code == 200
    return client


def answer(client: TestClient, image_id: str, **fields) -> int:
    body = {"image_id": image_id, "answer": "real", "confidence": 3, **fields}
    return client.post("/api/ratings", json=body).status_code


def test_a_session_shows_every_image_once_balanced_and_never_the_answer(app, rater, db_url):
    truth = {image.id: image.truth for image in app.state.study.catalog}
    seen = []
    for _ in range(20):
        response = rater.get("/api/next")
        state = response.json()
        text = response.text
        assert "truth" not in text and "real" not in text and "synthetic" not in text
        if state["done"]:
            break
        assert state["answered"] == len(seen) and state["total"] == 8
        image_id = state["image"]["id"]
        assert re.fullmatch(r"[0-9a-f]{64}", image_id)
        png = rater.get(state["image"]["url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        # pixels only: generated files' provenance chunks and the real files' format are not passed on
        assert b"terrasynth" not in png.content and b"tEXt" not in png.content and b"iTXt" not in png.content
        assert Image.open(io.BytesIO(png.content)).size == (32, 32)
        assert answer(rater, image_id, click_x=0.25, click_y=0.75, response_ms=1200) == 201
        seen.append(image_id)
    assert state["done"] and state["answered"] == 8
    assert len(set(seen)) == 8 and sorted(seen) == sorted(truth)
    assert sum(truth[i] == "real" for i in seen) == 4
    with open_database(db_url)() as session:
        assert session.scalar(select(func.count()).select_from(Rating)) == 8


def test_orders_are_balanced_when_sets_differ_in_size(tmp_path, db_url, admin_hash):
    from tests.study.helpers import make_study_sets

    app = create_app(*make_study_sets(tmp_path / "t", n_real=6, n_fake=3), db_url, admin_hash, seed=1)
    truth = {image.id: image.truth for image in app.state.study.catalog}
    covered = set()
    for _ in range(2):
        client = TestClient(app)
        assert client.post("/api/session").json()["total"] == 6
        order = []
        while not (state := client.get("/api/next").json())["done"]:
            order.append(state["image"]["id"])
            assert answer(client, order[-1]) == 201
        assert sorted(truth[i] for i in order) == ["real"] * 3 + ["synthetic"] * 3
        covered |= set(order)
    assert len(covered) == 9  # the second rater gets the real images the first did not see


def test_double_submission_is_409_and_stores_one_rating(rater, db_url):
    image_id = rater.get("/api/next").json()["image"]["id"]
    assert answer(rater, image_id) == 201
    assert answer(rater, image_id, answer="synthetic") == 409
    with open_database(db_url)() as session:
        assert session.scalar(select(func.count()).select_from(Rating)) == 1
        assert session.scalar(select(Rating.answer)) == "real"


def test_unknown_and_out_of_session_ids_are_404_and_out_of_order_is_409(app, rater, study_sets, db_url, admin_hash):
    assert answer(rater, "0" * 64) == 404
    assert rater.get(f"/api/images/{'0' * 64}").status_code == 404
    order = [a.image_id for a in _assignments(app, rater)]
    assert answer(rater, order[1]) == 409  # skipping ahead
    assert answer(rater, order[0]) == 201
    # a rater of 2 images (same study, same database): the other images are not theirs to see or rate
    small = create_app(*study_sets, db_url, admin_hash, images_per_rater=2, seed=3)
    other = TestClient(small)
    other.post("/api/session")
    mine = {a.image_id for a in _assignments(small, other)}
    assert len(mine) == 2
    for foreign in set(order) - mine:
        assert other.get(f"/api/images/{foreign}").status_code == 404
        assert answer(other, foreign) == 404


def _assignments(app, client):
    from terrasynth.study.app import _token_sha256
    from terrasynth.study.db import Assignment, Rater

    token = client.cookies[RATER_COOKIE]
    with app.state.study.sessions() as session:
        rater = session.scalar(select(Rater).where(Rater.token_sha256 == _token_sha256(token)))
        return list(
            session.scalars(select(Assignment).where(Assignment.rater_id == rater.id).order_by(Assignment.position))
        )


@pytest.mark.parametrize(
    "path",
    [
        "/api/images/../../etc/passwd",
        "/api/images/..%2F..%2Fetc%2Fpasswd",
        "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/images/0000.png",
        "/api/images/real%2F0000.png",
        "/api/images/..",
        "/static/..%2F..%2Fdb.py",
        "/static/../catalog.py",
    ],
)
def test_path_traversal_is_404(rater, path):
    response = rater.get(path)
    assert response.status_code == 404
    assert b"import" not in response.content and b"root:" not in response.content


NEXT = "<the id of the next image>"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"answer": "real", "confidence": 3},  # no image id
        {"image_id": "x" * 64, "answer": "real", "confidence": 3},  # not a sha256
        {"image_id": "../../etc/passwd", "answer": "real", "confidence": 3},
        {"image_id": NEXT, "answer": "maybe", "confidence": 3},
        {"image_id": NEXT, "answer": "Real", "confidence": 3},
        {"image_id": NEXT, "answer": "real"},
        {"image_id": NEXT, "answer": "real", "confidence": 0},
        {"image_id": NEXT, "answer": "real", "confidence": 6},
        {"image_id": NEXT, "answer": "real", "confidence": 2.5},
        {"image_id": NEXT, "answer": "real", "confidence": "3"},
        {"image_id": NEXT, "answer": "real", "confidence": True},
        {"image_id": NEXT, "answer": "real", "confidence": 3, "click_x": 1.5, "click_y": 0.5},
        {"image_id": NEXT, "answer": "real", "confidence": 3, "click_x": 0.5},
        {"image_id": NEXT, "answer": "real", "confidence": 3, "response_ms": -1},
        {"image_id": NEXT, "answer": "real", "confidence": 3, "truth": "real"},  # unknown field
        {"image_id": NEXT, "answer": "real", "confidence": 3, "rater_id": "someone-else"},
        [1, 2, 3],
        "real",
    ],
)
def test_malformed_rating_bodies_are_422_and_store_nothing(rater, body, db_url):
    if isinstance(body, dict) and body.get("image_id") == NEXT:
        body = {**body, "image_id": rater.get("/api/next").json()["image"]["id"]}
    assert rater.post("/api/ratings", json=body).status_code == 422
    with open_database(db_url)() as session:
        assert session.scalar(select(func.count()).select_from(Rating)) == 0


def test_not_json_is_422_and_huge_bodies_are_413(rater):
    headers = {"Content-Type": "application/json"}
    assert rater.post("/api/ratings", content=b"{not json", headers=headers).status_code == 422
    assert rater.post("/api/ratings", content=b"x" * 100_000, headers=headers).status_code == 413

    def chunks():  # streamed without a Content-Length
        for _ in range(50):
            yield b"x" * 1000

    assert rater.post("/api/ratings", content=chunks(), headers=headers).status_code == 413


def test_without_a_session_the_api_is_401(app):
    client = TestClient(app)
    assert client.get("/api/next").status_code == 401
    assert (
        client.post("/api/ratings", json={"image_id": "0" * 64, "answer": "real", "confidence": 1}).status_code == 401
    )
    client.cookies.set(RATER_COOKIE, "forged-token")
    assert client.get("/api/next").status_code == 401


def test_session_cookie_is_httponly_and_same_site_strict(app):
    response = TestClient(app).post("/api/session")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_admin_needs_the_password(app, rater):
    for path in ("/admin", "/admin/export.csv"):
        response = TestClient(app).get(path)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")
        assert TestClient(app).get(path, headers=basic("wrong password")).status_code == 401
        assert TestClient(app).get(path, headers=basic(ADMIN_PASSWORD, user="root")).status_code == 401
        # a rater's session cookie is no way in
        assert rater.get(path).status_code == 401
    assert TestClient(app).get("/admin", headers=basic(ADMIN_PASSWORD)).status_code == 200


def test_admin_export_has_every_rating_with_its_truth(app, rater):
    truth = {image.id: image.truth for image in app.state.study.catalog}
    answered = []
    for _ in range(3):
        image_id = rater.get("/api/next").json()["image"]["id"]
        assert answer(rater, image_id, answer="synthetic", confidence=4) == 201
        answered.append(image_id)
    admin = TestClient(app)
    page = admin.get("/admin", headers=basic(ADMIN_PASSWORD)).text
    assert '<span id="n-ratings">3</span>' in page and '<span id="n-raters">1</span>' in page
    export = admin.get("/admin/export.csv", headers=basic(ADMIN_PASSWORD))
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["image_id"] for r in rows] == answered
    for row in rows:
        assert row["truth"] == truth[row["image_id"]]
        assert row["correct"] == str(int(truth[row["image_id"]] == "synthetic"))
        assert row["answer"] == "synthetic" and row["confidence"] == "4"


def test_docs_and_openapi_are_not_served(rater):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert rater.get(path).status_code == 404


def test_an_image_may_not_change_sides_between_runs(study_sets, db_url, admin_hash):
    real, fake = study_sets
    create_app(real, fake, db_url, admin_hash)
    (real / "0000.png").rename(fake / "moved.png")
    with pytest.raises(InputError, match="moved.png: this image was 'real'"):
        create_app(real, fake, db_url, admin_hash)


def test_the_same_file_in_both_sets_is_refused(study_sets, db_url, admin_hash):
    real, fake = study_sets
    (fake / "copy.png").write_bytes((real / "0000.png").read_bytes())
    with pytest.raises(InputError, match="both sets"):
        create_app(real, fake, db_url, admin_hash)


def test_generated_file_in_the_real_folder_is_refused(tmp_path, study_sets, db_url, admin_hash):
    from tests.study.helpers import make_study_sets

    real, fake = study_sets
    _, other_fake = make_study_sets(tmp_path / "other", n_real=0, n_fake=1, seed=5)
    (real / "x.png").write_bytes(next(other_fake.glob("*.png")).read_bytes())
    with pytest.raises(InputError, match="provenance"):
        create_app(real, fake, db_url, admin_hash)


def test_password_hash_is_salted_and_verifies():
    first, second = hash_password("a long passphrase"), hash_password("a long passphrase")
    assert first != second and "a long passphrase" not in first
    assert verify_password("a long passphrase", first) and not verify_password("a long passphrasE", first)
    assert not verify_password("a long passphrase", "not-a-hash")


def test_rating_model_rejects_what_the_api_rejects():
    with pytest.raises(ValueError):
        RatingIn.model_validate(json.loads('{"image_id": "' + "a" * 64 + '", "answer": "real", "confidence": 9}'))
