"""Study fixtures: tiny real and synthetic tile sets, a cheap admin password hash, a live server."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the study extra is not installed: pip install -e '.[test]'")

from tests.study.helpers import ADMIN_PASSWORD, LiveServer, make_study_sets  # noqa: E402
from tests.study.postgres import PostgresUnavailable, start_postgres  # noqa: E402

from terrasynth.study import passwords  # noqa: E402


@pytest.fixture(scope="session")
def admin_hash() -> str:
    return passwords.hash_password(ADMIN_PASSWORD)


@pytest.fixture
def study_sets(tmp_path) -> tuple[Path, Path]:
    return make_study_sets(tmp_path / "tiles")


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the whole session (see tests/study/postgres.py); skips, saying why, without one."""
    try:
        server = start_postgres()
    except PostgresUnavailable as reason:
        pytest.skip(f"no PostgreSQL server: {reason}")
    yield server
    server.stop()


@pytest.fixture
def live_server():
    """``live_server(app)`` starts a server; every server started is stopped at the end of the test."""
    servers: list[LiveServer] = []

    def start(app) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()
