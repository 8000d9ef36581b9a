"""``terrasynth verify FILE``: metadata provenance, Content Credentials, the watermark and the detector's score.

They are independent: metadata and C2PA manifests are stripped by most re-encoders (a manifest is signed, so it
also shows whether the file changed since), the watermark survives re-encoding and resizing, and the detector
needs none of them. Where the file has a record and a watermark, the watermark payload is checked against the
record (model hash and record hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..generate.content_credentials import read_credentials
from ..generate.provenance import read_provenance
from ..generate.watermark import (
    BASELINE_SCHEME,
    DEFAULT_SCHEME,
    MIN_WATERMARK_SIZE,
    SCHEMES,
    V1_SCHEME,
    encode_word,
    locate_watermark,
    read_watermark,
    record_payload,
    split_payload,
)
from .detector import Detector, read_rgb
from .scan import assess


def verify_file(path: str | Path, detector: Detector | None = None) -> dict[str, Any]:
    path = Path(path)
    image = read_rgb(path)
    result: dict[str, Any] = {"file": str(path), "width": image.shape[1], "height": image.shape[0]}

    # 1. metadata
    try:
        record = read_provenance(path)
        result["provenance"] = None if record is None else record.to_dict()
    except InputError as error:
        record = None
        result["provenance"] = None
        result["provenance_error"] = error.problem
    declared = None if record is None else record.watermark

    # 2. Content Credentials (C2PA)
    try:
        credentials = read_credentials(path)
        if credentials is not None and record is not None and credentials["record"] is not None:
            credentials["matches_metadata"] = credentials["record"] == record.to_dict()
        result["content_credentials"] = credentials
    except InputError as error:  # c2pa-python is missing, or the manifest is unreadable
        result["content_credentials"] = {"present": None, "error": str(error)}

    # 3. watermark: the scheme the record declares, else the default where the image is large enough for it, then
    # the earlier scheme (small images and older files carry that one)
    if declared and declared.split(":")[0] in SCHEMES:
        candidates = [declared.split(":")[0]]
    else:
        candidates = [DEFAULT_SCHEME, V1_SCHEME] if min(image.shape[:2]) >= MIN_WATERMARK_SIZE else [V1_SCHEME]
    watermark: dict[str, Any] = {"scheme": candidates[0], "declared": declared}
    if min(image.shape[:2]) < 16:
        watermark["error"] = "image too small to carry a watermark"
    else:
        reading = None
        for scheme in candidates:
            try:
                attempt = read_watermark(image, scheme)
            except (InputError, ValueError) as error:  # the baseline's package is missing; too small for it
                watermark["error"] = getattr(error, "problem", str(error))
                continue
            watermark.pop("error", None)
            if reading is None or attempt.valid:
                reading = attempt
                watermark["scheme"] = scheme
            if attempt.valid:
                break
        if reading is not None and not reading.valid and len(candidates) > 1:
            watermark["scheme"] = " or ".join(candidates)
        if reading is not None:
            watermark["valid"] = reading.valid
            watermark["payload"] = reading.payload_hex()
            if reading.valid:
                model_hash, record_hash = split_payload(reading.payload)
                watermark["model_hash"], watermark["record_hash"] = model_hash, record_hash
                if watermark["scheme"] == DEFAULT_SCHEME:
                    located = locate_watermark(image, DEFAULT_SCHEME)
                    watermark["marked_share"] = float((located > 0.5).mean())
            if record is not None and declared not in (None, "none"):
                expected = record_payload(record)
                watermark["expected_payload"] = f"{expected:010x}"
                watermark["bit_accuracy"] = reading.bit_accuracy(encode_word(expected))
                watermark["matches_record"] = reading.payload == expected
    result["watermark"] = watermark

    # 4. detector
    if detector is None:
        result["detector"] = None
    else:
        try:
            detector.check_size(image.shape[1], image.shape[0], path)
            result["detector"] = {
                "method": detector.config.method,
                **assess(detector, image),
                "operating_point": detector.config.operating_point,
            }
            if hasattr(detector, "localize"):
                result["detector"]["localize"] = f"terrasynth detect localize {path} --out MASK.png"
        except InputError as error:
            result["detector"] = {"method": detector.config.method, "error": error.problem}

    result["summary"] = _summary(result)
    return result


def _summary(result: dict) -> str:
    parts = []
    record = result.get("provenance")
    parts.append("metadata says synthetic" if record and record.get("synthetic") else "no provenance metadata")
    credentials = result.get("content_credentials")
    if credentials is not None and "status" in credentials:
        parts.append(f"Content Credentials {credentials['status']}")
    mark = result["watermark"]
    if mark.get("valid"):
        parts.append("watermark found" + (" and matches the record" if mark.get("matches_record") else ""))
        if mark.get("marked_share", 1.0) < 0.9:
            parts.append(f"the mark covers {mark['marked_share']:.0%} of the image (a composite?)")
    elif record and record.get("watermark") == "none":
        parts.append("generated without a watermark (--no-watermark)")
    else:
        parts.append("no valid watermark")
    detector = result.get("detector")
    if detector and "verdict" in detector:
        calibrated = f", p = {detector['p_value']:.3g}" if "p_value" in detector else ""
        parts.append(f"detector: {detector['verdict']} ({detector['score']:.3f}{calibrated})")
    return "; ".join(parts)


__all__ = ["BASELINE_SCHEME", "record_payload", "verify_file"]
