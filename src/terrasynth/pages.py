"""HTML pages, rendered from the Jinja2 templates in ``terrasynth/templates/`` with autoescape on: every value a
page shows is escaped unless its template marks it safe, so no page is assembled in Python strings.

    render_page("demo/index.html", rows=rows, model_id="default", steps=10, sampler="dpm++sde", seconds=12.0)
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2


@functools.cache
def environment() -> jinja2.Environment:
    """The one template environment (also handed to FastAPI's ``Jinja2Templates`` by the study app)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("terrasynth", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(name: str, **context: Any) -> str:
    """The template ``name`` (a path under ``terrasynth/templates/``) filled with ``context``."""
    return environment().get_template(name).render(**context)
