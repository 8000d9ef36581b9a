"""Scanning a folder: one CSV line per file with a status, a score and a verdict; a bad file never stops a scan.

Statuses: ``ok``; ``not_an_image`` (not an image format); ``unreadable`` (truncated or damaged image);
``too_large`` (above the detector's stated pixel limit); ``too_small`` (smaller than the detector input).
Verdicts: ``synthetic``, ``real``, and with a calibrated detector (``probe``) also ``uncertain`` and
``outside calibrated domain``, with the image's p-value against held-out real imagery.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..files import write_text_atomic
from .detector import Detector, read_rgb

log = logging.getLogger(__name__)

COLUMNS = ("file", "status", "score", "p_value", "verdict", "threshold", "detail")


def _status(error: InputError) -> str:
    problem = error.problem
    if problem.startswith("not an image"):
        return "not_an_image"
    if "pixel limit" in problem:
        return "too_large"
    if "smaller than the detector input" in problem:
        return "too_small"
    return "unreadable"


def assess(detector: Detector, image) -> dict:
    """A detector's answer for one image: ``score`` and ``verdict``, plus ``p_value`` and the domain check where the
    detector is calibrated (``probe``); others answer by their threshold alone."""
    if hasattr(detector, "assess"):
        return detector.assess(image)
    score = float(detector.score([image])[0])
    return {"score": score, "verdict": "synthetic" if score > detector.threshold else "real"}


def scan_files(detector: Detector, files: list[Path]) -> Iterator[dict]:
    """One row per file, in order."""
    threshold = detector.threshold
    for path in files:
        row = {
            "file": str(path),
            "status": "ok",
            "score": "",
            "p_value": "",
            "verdict": "",
            "threshold": f"{threshold:.6g}",
            "detail": "",
        }
        try:
            image = read_rgb(path, detector.config.max_pixels)
            detector.check_size(image.shape[1], image.shape[0], path)
            answer = assess(detector, image)
            row["score"] = f"{answer['score']:.6f}"
            row["verdict"] = answer["verdict"]
            if "p_value" in answer:
                row["p_value"] = f"{answer['p_value']:.6f}"
            row["detail"] = answer.get("domain_detail") or answer.get("evidence", "")
        except InputError as error:
            row["status"] = _status(error)
            row["detail"] = error.problem
        except Exception as error:  # noqa: BLE001 - a scan reports every file, whatever goes wrong in one
            log.exception("scanning %s", path)
            row["status"] = "error"
            row["detail"] = f"{type(error).__name__}: {error}"
        yield row


def list_files(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Every visible regular file under ``folder`` (images or not: non-images get their own line); a file given
    instead of a folder is scanned alone. A folder with no file in it is an error: there is nothing to vouch for."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.exists():
        raise InputError(folder, "no such file or folder")
    if not folder.is_dir():
        raise InputError(folder, "not a file or folder")
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(
        p for p in pattern if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise InputError(folder, "the folder has no files to scan", "point it at a folder of images, or at one image")
    return files


def scan_folder(detector: Detector, folder: str | Path, out_csv: str | Path, recursive: bool = True) -> list[dict]:
    """Scan every file under ``folder`` and write ``out_csv`` atomically; returns the rows."""
    files = [p for p in list_files(folder, recursive) if Path(out_csv).resolve() != p.resolve()]
    rows = list(scan_files(detector, files))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_csv, buffer.getvalue())
    return rows
