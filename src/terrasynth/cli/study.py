"""``terrasynth study serve | report``: the human realism study."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def _study_extra():
    try:
        import fastapi  # noqa: F401
        import scipy  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise InputError(
            None, f"the study needs the 'study' extra ({error.name} is missing)", "pip install 'terrasynth[study]'"
        ) from None


def cmd_study_serve(args) -> int:
    _study_extra()
    from ..study.app import create_app, serve
    from ..study.passwords import admin_password_hash_from_env

    password_hash = admin_password_hash_from_env(args.admin_password_env)
    app = create_app(
        args.real,
        args.fake,
        args.db,
        password_hash,
        images_per_rater=args.images_per_rater,
        seed=args.seed,
        title=args.title,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"study at http://{host}:{args.port}/ (admin: /admin, user 'admin'); ratings in {args.db}")
    serve(app, args.host, args.port, log_level="info" if args.verbose else "warning")
    return 0


def cmd_study_report(args) -> int:
    _study_extra()
    from ..study.report import make_report

    scores = {}
    for item in args.scores:
        name, _, path = item.rpartition("=") if "=" in item else (Path(item).stem, "", item)
        if not name or not path or name in scores:
            raise InputError(None, f"--scores wants NAME=CSV with distinct names, got {item!r}")
        scores[name] = path
    print(make_report(args.db, args.out, scores, seed=args.seed))
    return 0


def add_commands(commands, common) -> None:
    study = commands.add_parser("study", help="human realism study: serve the rating web app, report results")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    serve = study_commands.add_parser("serve", help="serve the real-vs-synthetic rating web app")
    serve.add_argument("--real", required=True, help="folder of real tiles")
    serve.add_argument("--fake", required=True, help="folder of synthetic tiles")
    serve.add_argument("--db", default="sqlite:///study.db", help="SQLAlchemy URL (default sqlite:///study.db)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--admin-password-env",
        default="TERRASYNTH_STUDY_ADMIN_PASSWORD",
        help="environment variable holding the admin password (or its scrypt hash)",
    )
    serve.add_argument("--images-per-rater", type=int, help="default: twice the smaller set (balanced)")
    serve.add_argument("--seed", type=int, help="seed of the orders drawn (default: random)")
    serve.add_argument("--title", default="Real or synthetic?", help="page title raters see")
    serve.set_defaults(func=cmd_study_serve)
    report = study_commands.add_parser("report", help="accuracy, d', fooling rates, calibration, agreement (HTML)")
    report.add_argument("--db", required=True, help="SQLAlchemy URL of the study's database")
    report.add_argument("--out", required=True, help="output folder (report.html, plots, CSV, JSON)")
    report.add_argument(
        "--scores", action="append", default=[], help="NAME=CSV of per-image scores (columns file,score; repeatable)"
    )
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.set_defaults(func=cmd_study_report)
