"""The study's database: images, raters, their assigned order and their ratings (SQLAlchemy 2.0).

Any SQLAlchemy URL works (``sqlite:///study.db``, ``postgresql+psycopg://...``). Every request commits its own
transaction, so a rating that was answered with 201 survives a crash or a restart. SQLite gets WAL journaling,
``synchronous=FULL`` and ``BEGIN IMMEDIATE`` transactions: concurrent writers queue on the busy timeout instead
of failing with "database is locked".
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ..errors import InputError

log = logging.getLogger(__name__)

REAL, SYNTHETIC = "real", "synthetic"
ANSWERS = (REAL, SYNTHETIC)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes; every time stored here is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


class Base(DeclarativeBase):
    pass


class StudyImage(Base):
    """One tile of the study. ``id`` is the SHA-256 of the file's bytes: opaque to raters, stable across
    restarts, and the same tile keeps its ratings when the folders are moved."""

    __tablename__ = "images"
    __table_args__ = (CheckConstraint("truth IN ('real', 'synthetic')", name="ck_images_truth"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    truth: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(512))
    path: Mapped[str] = mapped_column(String(4096))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Rater(Base):
    """An anonymous rater. ``id`` is public (it appears in exports); the browser holds a separate secret
    token, of which only the SHA-256 is stored."""

    __tablename__ = "raters"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)


class Assignment(Base):
    """The ``position``-th image a rater sees."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("rater_id", "position", name="uq_assignment_position"),
        UniqueConstraint("rater_id", "image_id", name="uq_assignment_image"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)


class Rating(Base):
    """A rater's judgement of one image; at most one per (rater, image)."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("rater_id", "image_id", name="uq_rating_rater_image"),
        CheckConstraint("answer IN ('real', 'synthetic')", name="ck_ratings_answer"),
        CheckConstraint("confidence BETWEEN 1 AND 5", name="ck_ratings_confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"), index=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    answer: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[int] = mapped_column(Integer)
    click_x: Mapped[float | None] = mapped_column(Float, nullable=True)
    click_y: Mapped[float | None] = mapped_column(Float, nullable=True)
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, open transactions (see the SQLAlchemy pysqlite docs).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Take the write lock up front: no reader can be caught needing to upgrade (SQLITE_BUSY_SNAPSHOT).
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the study's tables created (idempotent). A bad URL is an InputError."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        raise InputError(
            None, f"cannot use database URL {url!r} ({error})", "e.g. sqlite:///study.db or postgresql+psycopg://..."
        ) from None
    try:
        Base.metadata.create_all(engine)
    except SQLAlchemyError as error:
        raise InputError(None, f"cannot open database {engine.url!r} ({type(error).__name__}: {error})") from None
    return engine


def open_database(url: str) -> sessionmaker[Session]:
    return sessionmaker(make_engine(url), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    with factory() as session, session.begin():
        yield session
