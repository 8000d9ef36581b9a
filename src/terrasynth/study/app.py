"""The study web app: raters judge one tile at a time as real or synthetic; an admin page exports the ratings.

    app = create_app("tiles/real", "tiles/fake", "sqlite:///study.db", hash_password("..."))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Rater API (JSON, cookie ``ts_rater`` identifies the anonymous rater):

- ``POST /api/session`` starts (or resumes) a session with a balanced random order of images;
- ``GET /api/next`` the next image to judge and the progress, never its answer;
- ``POST /api/ratings`` ``{image_id, answer: real|synthetic, confidence: 1..5, click_x?, click_y?, response_ms?}``
  → 201; 404 for an image that is not in the rater's session, 409 for a second answer or one out of order,
  422 for a malformed body;
- ``GET /api/images/{id}`` a metadata-free PNG of an image in the rater's session.

Admin (HTTP Basic, user name ``admin``): ``GET /admin`` progress, ``GET /admin/export.csv`` every rating.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations at run time, and
they name dependencies local to ``create_app``.
"""

import csv
import hashlib
import hmac
import io
import logging
import random
import secrets
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import InputError
from ..pages import environment
from .catalog import IMAGE_ID, ImageCatalog
from .db import REAL, SYNTHETIC, Assignment, Rater, Rating, StudyImage, as_utc, open_database, transaction
from .passwords import is_password_hash, verify_password

log = logging.getLogger(__name__)

RATER_COOKIE = "ts_rater"
ADMIN_USER = "admin"
MAX_BODY_BYTES = 16 * 1024
_SESSION_DAYS = 30
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, declared (Content-Length) or streamed
    (chunked), before the app has buffered more than that."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = JSONResponse({"detail": "request body too large"}, status_code=413)
            return await response(scope, receive, send)
        received, too_large = 0, False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    raise HTTPException(413, "request body too large")  # stops reading; FastAPI answers 400
            return message

        async def guarded_send(message):
            if not too_large:
                return await send(message)
            # the app's answer to the interrupted body (FastAPI makes it a 400) becomes a 413
            if message["type"] == "http.response.start":
                body = b'{"detail":"request body too large"}'
                headers = [(k, v) for k, v in message["headers"] if k not in (b"content-length", b"content-type")]
                headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 413, "headers": headers})
                await send({"type": "http.response.body", "body": body})

        return await self.app(scope, limited_receive, guarded_send)


class RatingIn(BaseModel):
    """One judgement as the browser sends it. Unknown fields, wrong types and out-of-range values → 422."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image_id: str = Field(pattern=IMAGE_ID.pattern)
    answer: Literal["real", "synthetic"]
    confidence: int = Field(ge=1, le=5)
    click_x: float | None = Field(default=None, ge=0.0, le=1.0)
    click_y: float | None = Field(default=None, ge=0.0, le=1.0)
    response_ms: int | None = Field(default=None, ge=0, le=24 * 3600 * 1000)

    @model_validator(mode="after")
    def _click_is_a_point(self) -> "RatingIn":
        if (self.click_x is None) != (self.click_y is None):
            raise ValueError("click_x and click_y go together")
        return self


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Study:
    """The state behind the app: the image catalog, the database and how orders are drawn."""

    def __init__(
        self,
        catalog: ImageCatalog,
        sessions: sessionmaker[Session],
        admin_password_hash: str,
        images_per_rater: int | None = None,
        seed: int | None = None,
    ):
        counts = catalog.counts()
        if min(counts.values()) == 0:
            raise InputError(None, f"the study needs real and synthetic images, got {counts}")
        if not is_password_hash(admin_password_hash):
            raise ValueError("admin_password_hash must come from terrasynth.study.passwords.hash_password")
        if images_per_rater is not None and images_per_rater < 2:
            raise InputError(None, f"images per rater must be at least 2, got {images_per_rater}")
        self.catalog = catalog
        self.sessions = sessions
        self.admin_password_hash = admin_password_hash
        per_truth = min(counts.values())
        if images_per_rater is not None:
            per_truth = min(per_truth, images_per_rater // 2)
        self.per_truth = per_truth
        self.rng = random.Random(seed)
        self._sync_images()

    def _sync_images(self) -> None:
        """Add the catalog's images to the database; an image may not change sides between runs."""
        with transaction(self.sessions) as session:
            stored = {image.id: image for image in session.scalars(select(StudyImage))}
            for image in self.catalog:
                row = stored.get(image.id)
                if row is None:
                    session.add(
                        StudyImage(id=image.id, truth=image.truth, file_name=image.path.name, path=str(image.path))
                    )
                elif row.truth != image.truth:
                    raise InputError(
                        image.path,
                        f"this image was '{row.truth}' in this study's database and is '{image.truth}' now",
                        "use the same --real/--fake folders as before, or a new --db",
                    )
                else:
                    row.file_name, row.path = image.path.name, str(image.path)

    # raters -----------------------------------------------------------------------------------------------

    def rater_for_token(self, session: Session, token: str | None) -> Rater | None:
        if not token or len(token) > 128:
            return None
        return session.scalar(select(Rater).where(Rater.token_sha256 == _token_sha256(token)))

    def draw_order(self, session: Session) -> list[str]:
        """``per_truth`` real and ``per_truth`` synthetic images, the least-assigned first (so all images get
        rated about equally often), shuffled together."""
        assigned = Counter(
            dict(session.execute(select(Assignment.image_id, func.count()).group_by(Assignment.image_id)).all())
        )
        order: list[str] = []
        for truth in (REAL, SYNTHETIC):
            ids = self.catalog.ids(truth)
            keyed = sorted(ids, key=lambda i: (assigned[i], self.rng.random()))
            order.extend(keyed[: self.per_truth])
        self.rng.shuffle(order)
        return order

    def new_rater(self, session: Session, user_agent: str | None) -> tuple[Rater, str]:
        token = secrets.token_urlsafe(32)
        rater = Rater(id=uuid.uuid4().hex, token_sha256=_token_sha256(token), user_agent=(user_agent or "")[:256])
        session.add(rater)
        session.flush()
        for position, image_id in enumerate(self.draw_order(session)):
            session.add(Assignment(rater_id=rater.id, position=position, image_id=image_id))
        log.info("new rater %s", rater.id)
        return rater, token

    def progress(self, session: Session, rater: Rater) -> tuple[list[Assignment], set[str]]:
        """The rater's assignments still in the catalog (in order) and the ids they have answered."""
        assignments = [
            a
            for a in session.scalars(
                select(Assignment).where(Assignment.rater_id == rater.id).order_by(Assignment.position)
            )
            if a.image_id in self.catalog.images
        ]
        answered = set(session.scalars(select(Rating.image_id).where(Rating.rater_id == rater.id)))
        return assignments, answered

    def state(self, session: Session, rater: Rater) -> dict:
        assignments, answered = self.progress(session, rater)
        pending = [a for a in assignments if a.image_id not in answered]
        done = sum(a.image_id in answered for a in assignments)
        state = {"rater_id": rater.id, "answered": done, "total": len(assignments), "done": not pending}
        if pending:
            state["image"] = {"id": pending[0].image_id, "url": f"/api/images/{pending[0].image_id}"}
        return state

    # admin ------------------------------------------------------------------------------------------------

    def check_admin(self, credentials: HTTPBasicCredentials | None) -> bool:
        password = credentials.password if credentials is not None else ""
        user = credentials.username if credentials is not None else ""
        # Always pay for the hash, so a wrong user name takes as long as a wrong password.
        password_ok = verify_password(password, self.admin_password_hash)
        user_ok = hmac.compare_digest(user.encode("utf-8"), ADMIN_USER.encode("utf-8"))
        return credentials is not None and password_ok and user_ok

    def export_rows(self, session: Session) -> list[dict]:
        query = (
            select(Rating, StudyImage)
            .join(StudyImage, Rating.image_id == StudyImage.id)
            .order_by(Rating.created_at, Rating.id)
        )
        rows = []
        for rating, image in session.execute(query).all():
            created = as_utc(rating.created_at)
            rows.append(
                {
                    "rating_id": rating.id,
                    "rater_id": rating.rater_id,
                    "image_id": rating.image_id,
                    "file_name": _csv_safe(image.file_name),
                    "truth": image.truth,
                    "answer": rating.answer,
                    "correct": int(rating.answer == image.truth),
                    "confidence": rating.confidence,
                    "click_x": "" if rating.click_x is None else f"{rating.click_x:.4f}",
                    "click_y": "" if rating.click_y is None else f"{rating.click_y:.4f}",
                    "response_ms": "" if rating.response_ms is None else rating.response_ms,
                    "position": rating.position,
                    "created_at": created.isoformat(timespec="milliseconds") if created else "",
                }
            )
        return rows


EXPORT_COLUMNS = (
    "rating_id",
    "rater_id",
    "image_id",
    "file_name",
    "truth",
    "answer",
    "correct",
    "confidence",
    "click_x",
    "click_y",
    "response_ms",
    "position",
    "created_at",
)


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(
    real_dir: str | Path,
    fake_dir: str | Path,
    db_url: str,
    admin_password_hash: str,
    *,
    images_per_rater: int | None = None,
    seed: int | None = None,
    title: str = "Real or synthetic?",
) -> FastAPI:
    """The study app over the images in ``real_dir`` and ``fake_dir``, storing ratings at ``db_url``.

    ``admin_password_hash`` comes from :func:`terrasynth.study.passwords.hash_password`; ``images_per_rater``
    caps each rater's session (default: as many as keeps it balanced, twice the smaller set); ``seed`` fixes the
    orders drawn (for tests).
    """
    catalog = ImageCatalog(real_dir, fake_dir)
    study = Study(catalog, open_database(db_url), admin_password_hash, images_per_rater, seed)
    app = FastAPI(title="terrasynth study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.study = study
    basic = HTTPBasic(auto_error=False, realm="terrasynth study admin")
    templates = Jinja2Templates(env=environment())

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    app.add_middleware(BodySizeLimit, limit=MAX_BODY_BYTES)  # outermost: runs before the body is read

    # Each handler opens and closes its own transaction inside one function: a transaction held across
    # FastAPI's thread-pool hops (a session from a dependency) can deadlock SQLite's write lock when all
    # pool threads wait for it.
    def rater_of(session: Session, request: Request) -> Rater:
        rater = study.rater_for_token(session, request.cookies.get(RATER_COOKIE))
        if rater is None:
            raise HTTPException(401, "no rater session: open the study page to start one")
        return rater

    def admin(credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> None:
        if not study.check_admin(credentials):
            raise HTTPException(
                401, "admin password required", headers={"WWW-Authenticate": 'Basic realm="terrasynth study admin"'}
            )

    # pages ------------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "study/index.html", {"title": title})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    # rater API --------------------------------------------------------------------------------------------

    @app.post("/api/session")
    def start_session(request: Request, response: Response) -> dict:
        with transaction(study.sessions) as session:
            rater = study.rater_for_token(session, request.cookies.get(RATER_COOKIE))
            if rater is None:
                rater, token = study.new_rater(session, request.headers.get("user-agent"))
                response.set_cookie(
                    RATER_COOKIE,
                    token,
                    max_age=_SESSION_DAYS * 24 * 3600,
                    httponly=True,
                    samesite="strict",
                    secure=request.url.scheme == "https",
                    path="/",
                )
            return study.state(session, rater)

    @app.get("/api/next")
    def next_image(request: Request) -> dict:
        with transaction(study.sessions) as session:
            return study.state(session, rater_of(session, request))

    @app.post("/api/ratings", status_code=201)
    def rate(body: RatingIn, request: Request) -> dict:
        with transaction(study.sessions) as session:
            rater = rater_of(session, request)
            assignments, answered = study.progress(session, rater)
            assignment = next((a for a in assignments if a.image_id == body.image_id), None)
            if assignment is None:
                raise HTTPException(404, "no such image in this session")
            if body.image_id in answered:
                raise HTTPException(409, "this image has already been rated")
            pending = next(a for a in assignments if a.image_id not in answered)
            if pending.image_id != body.image_id:
                raise HTTPException(409, "rate the images in the order they are shown")
            session.add(
                Rating(
                    rater_id=rater.id,
                    image_id=body.image_id,
                    position=assignment.position,
                    answer=body.answer,
                    confidence=body.confidence,
                    click_x=body.click_x,
                    click_y=body.click_y,
                    response_ms=body.response_ms,
                )
            )
            try:
                session.flush()
            except IntegrityError:
                raise HTTPException(409, "this image has already been rated") from None
            log.debug("rater %s rated %s", rater.id, body.image_id[:12])
            return {"answered": len(answered) + 1, "total": len(assignments)}

    @app.get("/api/images/{image_id}")
    def image(image_id: str, request: Request) -> Response:
        with transaction(study.sessions) as session:
            rater = rater_of(session, request)
            assigned = study.catalog.get(image_id) is not None and session.scalar(
                select(Assignment.id).where(Assignment.rater_id == rater.id, Assignment.image_id == image_id)
            )
        if not assigned:
            raise HTTPException(404, "no such image")
        return Response(
            study.catalog.png_bytes(image_id),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    # admin ------------------------------------------------------------------------------------------------

    @app.get("/admin", response_class=HTMLResponse, dependencies=[Depends(admin)])
    def admin_page(request: Request) -> HTMLResponse:
        with transaction(study.sessions) as session:
            return templates.TemplateResponse(request, "study/admin.html", _admin_context(study, session, title))

    @app.get("/admin/export.csv", dependencies=[Depends(admin)])
    def export() -> Response:
        with transaction(study.sessions) as session:
            rows = study.export_rows(session)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(
            buffer.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="ratings.csv"'},
        )

    return app


def _admin_context(study: Study, session: Session, title: str) -> dict:
    """What the admin page shows: image counts, raters with their progress, ratings and accuracy so far."""
    counts = study.catalog.counts()
    raters = list(session.scalars(select(Rater).order_by(Rater.created_at)))
    ratings_by_rater = Counter(
        dict(session.execute(select(Rating.rater_id, func.count()).group_by(Rating.rater_id)).all())
    )
    totals = Counter(
        dict(session.execute(select(Assignment.rater_id, func.count()).group_by(Assignment.rater_id)).all())
    )
    correct = session.scalar(
        select(func.count()).select_from(Rating).join(StudyImage).where(Rating.answer == StudyImage.truth)
    )
    n_ratings = sum(ratings_by_rater.values())
    return {
        "title": title,
        "n_real": counts[REAL],
        "n_synthetic": counts[SYNTHETIC],
        "per_rater": study.per_truth * 2,
        "raters": [
            {
                "id": r.id,
                "started": str(as_utc(r.created_at))[:19],
                "answered": ratings_by_rater[r.id],
                "total": totals[r.id],
            }
            for r in raters
        ],
        "complete": sum(1 for r in raters if totals[r.id] and ratings_by_rater[r.id] >= totals[r.id]),
        "n_ratings": n_ratings,
        "accuracy": f"{correct / n_ratings:.1%}" if n_ratings else "–",
    }


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run ``app`` with uvicorn until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: HTTP Basic sends the admin password in the clear unless the study is behind HTTPS", host
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=True)
