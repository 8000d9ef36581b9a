"""The study over real HTTP on 127.0.0.1: 50 raters at once lose no rating and make no duplicate; a restart
keeps every rating and every session. Every loop is bounded in count and time. Each test runs on SQLite and on
a real PostgreSQL server (started by the ``postgres`` fixture; skipped, saying why, where there is none)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import httpx
import pytest
from sqlalchemy import func, select

from terrasynth.study.app import create_app
from terrasynth.study.db import Rating, open_database

RATERS = 50
PER_RATER = 4
DEADLINE_S = 120.0  # generous: a loaded 2-core CI machine is slow, and the bound only stops a hung test


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh study database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres").create_database()


def _stored(db_url) -> list[tuple[str, str]]:
    with open_database(db_url)() as session:
        return [tuple(row) for row in session.execute(select(Rating.rater_id, Rating.image_id)).all()]


def _rate_all(client: httpx.Client, deadline: float, answer: str = "real") -> tuple[list[str], list[int]]:
    """Answer every image of the client's session (each twice, as a double tap would), within the deadline."""
    rated, repeats = [], []
    for _ in range(PER_RATER + 2):
        if time.monotonic() > deadline:
            raise TimeoutError("rater did not finish in time")
        state = client.get("/api/next").json()
        if state["done"]:
            break
        body = {"image_id": state["image"]["id"], "answer": answer, "confidence": 2}
        assert client.post("/api/ratings", json=body).status_code == 201
        rated.append(body["image_id"])
        repeats.append(client.post("/api/ratings", json=body).status_code)
    return rated, repeats


def test_fifty_raters_at_once_lose_nothing_and_duplicate_nothing(study_sets, db_url, admin_hash, live_server):
    server = live_server(create_app(*study_sets, db_url, admin_hash, images_per_rater=PER_RATER, seed=0))
    deadline = time.monotonic() + DEADLINE_S
    start = threading.Barrier(RATERS, timeout=30)

    def rater(_index: int):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            start.wait()  # all 50 begin together
            rater_id = client.post("/api/session").json()["rater_id"]
            rated, repeats = _rate_all(client, deadline)
            return rater_id, rated, repeats

    with ThreadPoolExecutor(RATERS) as pool:
        futures = [pool.submit(rater, i) for i in range(RATERS)]
        done, not_done = wait(futures, timeout=DEADLINE_S + 10)
    assert not not_done, "some raters did not finish in time"
    results = [f.result() for f in futures]
    accepted = {(rater_id, image_id) for rater_id, rated, _ in results for image_id in rated}
    assert len(accepted) == RATERS * PER_RATER
    assert all(code == 409 for _, _, repeats in results for code in repeats)
    stored = _stored(db_url)
    lost, duplicated, extra = len(accepted - set(stored)), len(stored) - len(set(stored)), len(set(stored) - accepted)
    assert (lost, duplicated, extra) == (0, 0, 0), f"{lost} lost, {duplicated} duplicated, {extra} never accepted"
    assert len(stored) == RATERS * PER_RATER


def test_simultaneous_copies_of_one_rating_store_it_once(study_sets, db_url, admin_hash, live_server):
    server = live_server(create_app(*study_sets, db_url, admin_hash, seed=0))
    copies = 20
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/api/session")
        body = {"image_id": client.get("/api/next").json()["image"]["id"], "answer": "synthetic", "confidence": 5}
        start = threading.Barrier(copies, timeout=30)

        def send(_):
            start.wait()
            return client.post("/api/ratings", json=body).status_code

        with ThreadPoolExecutor(copies) as pool:
            codes = sorted(pool.map(send, range(copies), timeout=DEADLINE_S))
    assert codes == [201] + [409] * (copies - 1)
    assert len(_stored(db_url)) == 1


def test_a_restart_keeps_every_rating_and_session(study_sets, db_url, admin_hash, live_server):
    first = live_server(create_app(*study_sets, db_url, admin_hash, seed=0))
    with httpx.Client(timeout=30) as client:
        client.post(f"{first.url}/api/session")
        before = []
        for _ in range(3):
            image_id = client.get(f"{first.url}/api/next").json()["image"]["id"]
            assert (
                client.post(
                    f"{first.url}/api/ratings", json={"image_id": image_id, "answer": "real", "confidence": 1}
                ).status_code
                == 201
            )
            before.append(image_id)
        first.stop()
        assert len(_stored(db_url)) == 3

        second = live_server(create_app(*study_sets, db_url, admin_hash, seed=1))
        # cookies are per host, not per port: the same browser comes back to the new server
        state = client.get(f"{second.url}/api/next").json()
        assert state["answered"] == 3 and state["total"] == 8 and state["image"]["id"] not in before
        assert (
            client.post(
                f"{second.url}/api/ratings", json={"image_id": before[0], "answer": "synthetic", "confidence": 5}
            ).status_code
            == 409
        )
        export = client.get(f"{second.url}/admin/export.csv", auth=("admin", "correct horse battery staple"))
        assert export.status_code == 200 and all(i in export.text for i in before)
    stored = _stored(db_url)
    assert sorted(i for _, i in stored) == sorted(before)
    with open_database(db_url)() as session:
        assert session.scalar(select(func.count()).select_from(Rating).where(Rating.answer == "synthetic")) == 0
