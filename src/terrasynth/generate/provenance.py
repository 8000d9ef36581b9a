"""Provenance records carried inside generated files: PNG text chunks and XMP, GeoTIFF tags.

A record says the image is synthetic, which model and settings made it, and from which layout. It is written
where common tools look: PNG ``Software``/``Description``/``Comment`` and the IPTC digital source type
``trainedAlgorithmicMedia`` (also in XMP), GeoTIFF ``TIFFTAG_SOFTWARE``/``TIFFTAG_IMAGEDESCRIPTION``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import InputError
from ..files import atomic_path

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS

log = logging.getLogger(__name__)

GENERATOR = f"terrasynth {__version__}"
PNG_KEY = "terrasynth:provenance"
GEOTIFF_TAG = "TERRASYNTH_PROVENANCE"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_NAMESPACE = "urn:terrasynth:ns:1.0/"

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_XMP_RECORD = re.compile(rb"<terrasynth:provenance>(.*?)</terrasynth:provenance>", re.DOTALL)


def utc_timestamp() -> str:
    """The current time as ISO-8601 UTC with seconds, the form of ``ProvenanceRecord.created``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProvenanceRecord:
    """What made a synthetic image; stored as JSON in the image file."""

    synthetic: bool = True
    generator: str
    model: str
    model_sha256: str
    prompt: str
    negative_prompt: str | None
    seed: int | None
    steps: int
    guidance_scale: float
    scheduler: str
    layout_sha256: str | None
    layout_source: str | None
    width: int
    height: int
    created: str
    watermark: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("generator", "model", "model_sha256", "prompt", "scheduler", "created"):
            _check_type(name, getattr(self, name), str)
        for name in ("negative_prompt", "layout_sha256", "layout_source", "watermark"):
            _check_type(name, getattr(self, name), str, optional=True)
        _check_type("synthetic", self.synthetic, bool)
        _check_type("seed", self.seed, int, optional=True)
        for name in ("steps", "width", "height"):
            _check_type(name, getattr(self, name), int)
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")
        if isinstance(self.guidance_scale, bool) or not isinstance(self.guidance_scale, (int, float)):
            raise ValueError(f"guidance_scale must be a number, got {self.guidance_scale!r}")
        if not math.isfinite(self.guidance_scale):
            raise ValueError(f"guidance_scale must be finite, got {self.guidance_scale}")
        object.__setattr__(self, "guidance_scale", float(self.guidance_scale))
        try:
            created = datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"created must be an ISO-8601 time, got {self.created!r}") from None
        if created.utcoffset() is None:
            raise ValueError(f"created must carry a time zone (UTC), got {self.created!r}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be a dict, got {type(self.extra).__name__}")
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"extra must be JSON-serialisable: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys, ASCII); compact unless ``indent`` is given."""
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True, separators=separators, indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProvenanceRecord:
        """Build a record; unknown keys are an error, missing optional fields take None or their default."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a provenance record must be a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown provenance key(s): {', '.join(unknown)}")
        kwargs = dict(data)
        missing = []
        for name, spec in fields.items():
            if name in kwargs or _has_default(spec):
                continue
            if "None" in str(spec.type):
                kwargs[name] = None
            else:
                missing.append(name)
        if missing:
            raise ValueError(f"provenance record lacks required key(s): {', '.join(missing)}")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> ProvenanceRecord:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"provenance record is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def sha256(self) -> str:
        """Hex SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def _has_default(spec: dataclasses.Field) -> bool:
    return spec.default is not dataclasses.MISSING or spec.default_factory is not dataclasses.MISSING


def _check_type(name: str, value: Any, kind: type, optional: bool = False) -> None:
    if value is None and optional:
        return
    # bool is an int subclass; a seed or a width of True is a bug, not a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = f"{kind.__name__} or None" if optional else kind.__name__
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def layout_sha256(layout: Any) -> str:
    """Hex SHA-256 of a class-index layout (tensor or array): its shape, then its values as int64."""
    if hasattr(layout, "detach"):
        layout = layout.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(layout), dtype="<i8")
    digest = hashlib.sha256()
    digest.update(("shape=" + ",".join(str(n) for n in array.shape) + ";").encode("ascii"))
    digest.update(array.tobytes())
    return digest.hexdigest()


def xmp_packet(record: ProvenanceRecord) -> bytes:
    """An XMP packet with the IPTC digital source type and the record, for formats that carry XMP."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        f'    xmlns:terrasynth="{XMP_NAMESPACE}"\n'
        f'    Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}">\n'
        f"   <terrasynth:provenance>{html.escape(record.to_json(), quote=False)}</terrasynth:provenance>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    ).encode()


def _check_image(image: Any, record: ProvenanceRecord) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 image, got {array.dtype} {tuple(array.shape)}")
    if (array.shape[1], array.shape[0]) != (record.width, record.height):
        raise ValueError(
            f"image is {array.shape[1]}x{array.shape[0]} but the record says {record.width}x{record.height}"
        )
    return np.ascontiguousarray(array)


def write_png(path: str | Path, image: Any, record: ProvenanceRecord) -> None:
    """Write an RGB uint8 H x W x 3 image as PNG with the record in text chunks, atomically."""
    from PIL import Image, PngImagePlugin

    array = _check_image(image, record)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_KEY, record.to_json(), zip=True)
    info.add_text("Software", record.generator)
    info.add_text("Description", record.prompt)
    info.add_text("Comment", f"synthetic image generated by {record.model}")
    info.add_text("DigitalSourceType", DIGITAL_SOURCE_TYPE)
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(record).decode("utf-8"))
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", pnginfo=info)
    log.debug("wrote %s with provenance %s", path, record.sha256()[:12])


def _to_affine(transform: Any) -> Affine:
    from affine import Affine

    if isinstance(transform, Affine):
        return transform
    values = [float(v) for v in transform] if isinstance(transform, Sequence | np.ndarray) else None
    if values is None or len(values) not in (6, 9) or (len(values) == 9 and values[6:] != [0.0, 0.0, 1.0]):
        raise ValueError(f"transform must be an Affine or 6 affine numbers (a, b, c, d, e, f), got {transform!r}")
    return Affine(*values[:6])


def write_geotiff(
    path: str | Path,
    image: Any,
    record: ProvenanceRecord,
    crs: str | CRS,
    transform: Sequence[float] | Affine,
) -> None:
    """Write an RGB uint8 H x W x 3 image as a deflate GeoTIFF with the record in tags, atomically."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    array = _check_image(image, record)
    try:
        crs = CRS.from_user_input(crs)
    except CRSError as error:
        raise ValueError(f"invalid CRS {crs!r}: {error}") from None
    affine = _to_affine(transform)
    profile = {
        "driver": "GTiff",
        "width": record.width,
        "height": record.height,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": affine,
        "compress": "deflate",
        "photometric": "RGB",
    }
    tags = {
        GEOTIFF_TAG: record.to_json(),
        "TIFFTAG_SOFTWARE": record.generator,
        "TIFFTAG_IMAGEDESCRIPTION": record.prompt,
        "DIGITAL_SOURCE_TYPE": DIGITAL_SOURCE_TYPE,
    }
    # PAM off: no .aux.xml sidecar may be left beside the temporary name.
    with atomic_path(path) as tmp, rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.moveaxis(array, -1, 0))
            dst.update_tags(**tags)
    log.debug("wrote %s with provenance %s", path, record.sha256()[:12])


def _is_tiff(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) in _TIFF_MAGIC


def _parse_record(path: Path, text: str | bytes) -> ProvenanceRecord:
    try:
        return ProvenanceRecord.from_json(text)
    except ValueError as error:
        raise InputError(path, f"damaged provenance record ({error})") from None


def _record_from_xmp(path: Path, xmp: Any) -> ProvenanceRecord | None:
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if not isinstance(xmp, bytes):
        return None
    match = _XMP_RECORD.search(xmp)
    if match is None:
        return None
    return _parse_record(path, html.unescape(match.group(1).decode("utf-8", errors="replace")))


def _inspect(path: str | Path) -> tuple[dict[str, Any], ProvenanceRecord | None]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if _is_tiff(path) or path.suffix.lower() in (".tif", ".tiff"):
        return _inspect_tiff(path)
    return _inspect_pil(path)


def _inspect_tiff(path: Path) -> tuple[dict[str, Any], ProvenanceRecord | None]:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                georeference = None
                if src.crs is not None:
                    georeference = {"crs": src.crs.to_string(), "transform": list(src.transform)[:6]}
                info = {
                    "format": src.driver,
                    "width": src.width,
                    "height": src.height,
                    "bands": src.count,
                    "dtype": src.dtypes[0],
                    "georeference": georeference,
                }
                text = src.tags().get(GEOTIFF_TAG)
    except RasterioIOError as error:
        raise InputError(path, f"cannot read TIFF ({error})", "is it a complete GeoTIFF file?") from None
    return info, None if text is None else _parse_record(path, text)


def _inspect_pil(path: Path) -> tuple[dict[str, Any], ProvenanceRecord | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # text chunks after the pixel data are only read on load
            meta = dict(image.info)
            info = {
                "format": image.format,
                "width": image.width,
                "height": image.height,
                "bands": len(image.getbands()),
                "mode": image.mode,
                "georeference": None,
            }
    except Image.DecompressionBombError as error:
        from ..data.images import too_large

        raise too_large(path, error) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(path, f"cannot read image ({error})", "is it a complete PNG/JPEG/WebP/TIFF file?") from None
    text = meta.get(PNG_KEY)
    if isinstance(text, (str, bytes)):
        return info, _parse_record(path, text)
    return info, _record_from_xmp(path, meta.get("xmp"))


def read_provenance(path: str | Path) -> ProvenanceRecord | None:
    """The record in a PNG, GeoTIFF, JPEG or WebP file, or None if it has none; unreadable → InputError."""
    return _inspect(path)[1]


def describe(path: str | Path) -> dict[str, Any]:
    """What ``terrasynth info`` shows: format, size, georeference and the provenance record (or None)."""
    path = Path(path)
    info, record = _inspect(path)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        **info,
        "provenance": None if record is None else record.to_dict(),
    }
