"""Content Credentials: signed C2PA manifests in generated files, through ``c2pa-python`` (optional extra).

A manifest says who made the file and how, signed with the user's certificate: the ``c2pa.actions`` assertion
(``c2pa.created``, IPTC digital source type ``trainedAlgorithmicMedia``) and the terrasynth provenance record as
the assertion ``org.terrasynth.provenance``. The signature covers the file's bytes (a hard-binding data hash), so
any later change to the pixels or to the metadata shows up when the file is read. Nothing is fetched from the
network: no remote manifests, no OCSP; a time-stamp authority is contacted only when ``tsa_url`` is set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError
from ..files import atomic_path
from .provenance import DIGITAL_SOURCE_TYPE, ProvenanceRecord

log = logging.getLogger(__name__)

ASSERTION_LABEL = "org.terrasynth.provenance"
CLAIM_GENERATOR = f"terrasynth/{__version__}"
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
CERT_ENV = "TERRASYNTH_C2PA_CERT"
KEY_ENV = "TERRASYNTH_C2PA_KEY"
INSTALL_FIX = "pip install 'terrasynth[c2pa]'"

# Reading and signing never reach the network (a TSA, when configured, is the signer's own choice).
_SETTINGS = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "builder": {"thumbnail": {"enabled": False}},
}
_FORMATS = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Failure codes that mean the claim signature itself does not hold (c2pa-rs validation status codes).
_SIGNATURE_FAILURES = ("claimSignature.", "signingCredential.invalid", "algorithm.unsupported")


@dataclasses.dataclass(frozen=True)
class SignerConfig:
    """Where the signing certificate chain (PEM, end-entity first) and its private key (PEM) are."""

    cert_chain_path: Path
    private_key_path: Path
    algorithm: str = "es256"
    tsa_url: str | None = None
    # (chain PEM, key PEM) once ``load_credentials`` has read and checked them: read once per run, not per file.
    _credentials: tuple[bytes, bytes] | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("cert_chain_path", "private_key_path"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{name} must be a path, got {value!r}")
            object.__setattr__(self, name, Path(value))
        if not isinstance(self.algorithm, str) or self.algorithm.lower() not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        object.__setattr__(self, "algorithm", self.algorithm.lower())
        if self.tsa_url is not None and (
            not isinstance(self.tsa_url, str) or not self.tsa_url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"tsa_url must be an http(s) URL or None, got {self.tsa_url!r}")
        what = {"cert_chain_path": "certificate chain", "private_key_path": "private key"}
        for name, label in what.items():
            path = getattr(self, name)
            if not path.is_file():
                raise InputError(
                    path, f"C2PA {label} file not found", f"check --c2pa-cert/--c2pa-key or {CERT_ENV}/{KEY_ENV}"
                )


def signer_config_from(
    cert: str | Path | None = None, key: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> SignerConfig | None:
    """The signer from ``--c2pa-cert``/``--c2pa-key``, else from ``TERRASYNTH_C2PA_CERT``/``TERRASYNTH_C2PA_KEY``;
    None when neither names a certificate (no signing). Files are checked, and parsed, here: before generation."""
    environ = os.environ if environ is None else environ
    cert = cert or environ.get(CERT_ENV) or None
    key = key or environ.get(KEY_ENV) or None
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--c2pa-cert", "--c2pa-key") if cert else ("--c2pa-key", "--c2pa-cert")
        raise InputError(None, f"{given} needs {missing} too", f"pass both, or set {CERT_ENV} and {KEY_ENV}")
    config = SignerConfig(Path(cert), Path(key))
    load_credentials(config)
    return config


def _import_c2pa():
    try:
        import c2pa
    except ImportError:
        raise InputError(None, "Content Credentials need the c2pa-python package", INSTALL_FIX) from None
    return c2pa


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InputError(path, f"cannot read file ({error.strerror or error})") from None


def load_credentials(config: SignerConfig) -> tuple[bytes, bytes]:
    """(certificate chain PEM, private key PEM), both parsed and checked to belong together; read once per
    ``config`` and kept on it."""
    if config._credentials is not None:
        return config._credentials
    _import_c2pa()  # cryptography comes with it
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    chain_pem = _read_bytes(config.cert_chain_path)
    key_pem = _read_bytes(config.private_key_path)
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise InputError(
            config.cert_chain_path,
            "not a PEM certificate chain",
            "PEM certificates, the signing one first, then its CA's",
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise InputError(
            config.private_key_path, "not an unencrypted PEM private key", "give a PKCS#8 or SEC1 PEM key"
        ) from None
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != chain[0].public_key().public_bytes(*public):
        raise InputError(
            config.private_key_path,
            f"private key does not match the first certificate in {config.cert_chain_path}",
            "the chain must start with the signing (end-entity) certificate",
        )
    object.__setattr__(config, "_credentials", (chain_pem, key_pem))
    return chain_pem, key_pem


def _mime_type(path: Path) -> str:
    with path.open("rb") as file:
        head = file.read(8)
    for magic, mime in _FORMATS:
        if head.startswith(magic):
            return mime
    if head[:4] in _TIFF_MAGIC:
        return "image/tiff"
    raise InputError(path, "Content Credentials are written into PNG, JPEG and TIFF files only")


def build_manifest(record: ProvenanceRecord) -> dict[str, Any]:
    """The manifest definition: claim generator, ``c2pa.actions`` (created, trainedAlgorithmicMedia), the record."""
    return {
        "claim_generator": CLAIM_GENERATOR,
        "claim_generator_info": [{"name": "terrasynth", "version": __version__}],
        "title": f"synthetic image generated by {record.model}",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DIGITAL_SOURCE_TYPE,
                            "softwareAgent": {"name": "terrasynth", "version": __version__},
                        }
                    ]
                },
            },
            {"label": ASSERTION_LABEL, "data": record.to_dict()},
        ],
    }


def sign_file(
    path: str | Path, record: ProvenanceRecord, signer_config: SignerConfig, dest: str | Path | None = None
) -> None:
    """Embed a signed C2PA manifest for ``record`` into the PNG/JPEG/TIFF at ``path``, or write the signed copy
    to ``dest``; atomically either way (written beside the target and renamed onto it; on any error the target
    is left as it was)."""
    path = Path(path)
    dest = path if dest is None else Path(dest)
    if not path.is_file():
        raise InputError(path, "file not found")
    c2pa = _import_c2pa()
    mime = _mime_type(path)
    chain_pem, key_pem = load_credentials(signer_config)
    info = c2pa.C2paSignerInfo(signer_config.algorithm, chain_pem, key_pem, signer_config.tsa_url)
    try:
        signer = c2pa.Signer.from_info(info)
        context = c2pa.Context.from_dict(_SETTINGS)
        with (
            signer,
            context,
            c2pa.Builder(build_manifest(record), context=context) as builder,
            atomic_path(dest) as tmp,
            path.open("rb") as source,
            tmp.open("w+b") as dest,
        ):
            builder.sign(signer, mime, source, dest)
    except c2pa.C2paError as error:
        raise InputError(
            signer_config.cert_chain_path,
            f"cannot sign {path.name} with this certificate ({error})",
            "C2PA needs an X.509 v3 end-entity certificate with digitalSignature key usage and an "
            "emailProtection or documentSigning extended key usage, issued by a CA (not self-signed)",
        ) from None
    log.debug("signed %s (C2PA, %s)", dest, signer_config.algorithm)


def read_credentials(path: str | Path) -> dict[str, Any] | None:
    """The C2PA manifest in a file, validated, or None when it has none.

    Keys: ``present``, ``claim_generator``, ``record`` (the terrasynth assertion, or None), ``digital_source_type``,
    ``signer`` (issuer, common name, algorithm, time), ``validation_state`` (c2pa's ``Invalid``/``Valid``/
    ``Trusted``), ``signature_valid``, ``content_intact``, ``trusted``, ``failures`` (code: explanation) and
    ``status`` (one line). A missing file or one c2pa cannot parse → InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    c2pa = _import_c2pa()
    try:
        with c2pa.Context.from_dict(_SETTINGS) as context, path.open("rb") as file:
            reader = c2pa.Reader.try_create("", file, None, context)
            if reader is None:
                return None
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError.NotSupported:  # a format that cannot carry a manifest (e.g. BMP) has none
        return None
    except c2pa.C2paError as error:
        raise InputError(path, f"cannot read Content Credentials ({error})") from None
    return _summarise(store)


def _summarise(store: dict[str, Any]) -> dict[str, Any]:
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    actions = next((data for label, data in assertions.items() if str(label).startswith("c2pa.actions")), None)
    created = next((a for a in (actions or {}).get("actions", []) if a.get("action") == "c2pa.created"), {})
    generators = manifest.get("claim_generator_info") or []
    claim_generator = manifest.get("claim_generator")
    if claim_generator is None and generators:
        claim_generator = f"{generators[0].get('name')}/{generators[0].get('version')}"
    signature = manifest.get("signature_info") or {}
    statuses = (store.get("validation_results") or {}).get("activeManifest", {}).get("failure")
    statuses = statuses if statuses is not None else store.get("validation_status") or []
    codes = [str(s.get("code")) for s in statuses]
    broken = [c for c in codes if c.startswith(_SIGNATURE_FAILURES)]
    changed = [c for c in codes if c.startswith("assertion.") and c.endswith(".mismatch")]
    other = [c for c in codes if c not in broken and c not in changed and c != "signingCredential.untrusted"]
    trusted = store.get("validation_state") == "Trusted"
    if broken:
        status = f"signed, but the signature does not verify ({', '.join(broken)})"
    elif changed:
        status = f"signed, signature intact, but the file changed after signing ({', '.join(changed)})"
    elif other:
        status = f"signed, signature intact, validation errors: {', '.join(other)}"
    else:
        status = "signed, signature intact, " + ("signer trusted" if trusted else "signer not in trust list")
    return {
        "present": True,
        "claim_generator": claim_generator,
        "title": manifest.get("title"),
        "record": assertions.get(ASSERTION_LABEL),
        "digital_source_type": created.get("digitalSourceType"),
        "signer": {
            "issuer": signature.get("issuer"),
            "common_name": signature.get("common_name"),
            "algorithm": signature.get("alg"),
            "time": signature.get("time"),
        },
        "validation_state": store.get("validation_state"),
        "signature_valid": not broken,
        "content_intact": not changed,
        "trusted": trusted,
        "failures": [f"{s.get('code')}: {s.get('explanation')}" for s in statuses],
        "status": status,
    }


__all__ = ["SignerConfig", "build_manifest", "load_credentials", "read_credentials", "sign_file", "signer_config_from"]
