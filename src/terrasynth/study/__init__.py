"""Human realism study: a web app that collects real-vs-synthetic judgements, and their analysis.

``create_app`` (in :mod:`terrasynth.study.app`) serves the study; :mod:`terrasynth.study.report` turns the
ratings into accuracy, d′, fooling rates, calibration and agreement with automatic scores. Both need the
``study`` extra (FastAPI, uvicorn, SQLAlchemy, scipy).
"""
