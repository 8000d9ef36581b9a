"""C2PA Content Credentials: sign → read round-trips, tampering shows, bad certificates are named, off by default."""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.fakes import make_provenance_record

from terrasynth import __version__
from terrasynth.cli import main
from terrasynth.data.grids import to_uint8
from terrasynth.detect.verify import verify_file
from terrasynth.errors import InputError
from terrasynth.generate.content_credentials import (
    CERT_ENV,
    KEY_ENV,
    SignerConfig,
    read_credentials,
    sign_file,
    signer_config_from,
)
from terrasynth.generate.outputs import write_generated
from terrasynth.generate.provenance import DIGITAL_SOURCE_TYPE, ProvenanceRecord, read_provenance, write_png

SIZE = 16


def record(seed: int = 1, size: int = SIZE) -> ProvenanceRecord:
    return make_provenance_record(
        seed,
        size,
        generator=f"terrasynth {__version__}",
        prompt="aerial image of a forest",
        extra={"note": "test", "ratio": 0.25},
    )


def pixels(seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_chain(folder: Path, extended_key_usage: bool = True) -> tuple[Path, Path]:
    """A throwaway CA and an ES256 end-entity certificate it issued, as C2PA wants them: digitalSignature key
    usage, emailProtection extended key usage, key identifiers; chain PEM is end-entity first, then the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "terrasynth tests"),
            ]
        )

    def usage(signing: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False)
        return x509.KeyUsage(
            digital_signature=signing,
            key_cert_sign=not signing,
            crl_sign=not signing,
            encipher_only=False,
            decipher_only=False,
            **flags,
        )

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject: str, public_key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("terrasynth test CA"))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    ca = (
        builder("terrasynth test CA", ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(signing=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder("terrasynth test signer", key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(signing=True), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if extended_key_usage:
        leaf = leaf.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    leaf = leaf.sign(ca_key, hashes.SHA256())
    folder.mkdir(parents=True, exist_ok=True)
    chain, key_path = folder / "chain.pem", folder / "key.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca)))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, key_path


@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> SignerConfig:
    pytest.importorskip("c2pa")
    chain, key = make_chain(tmp_path_factory.mktemp("c2pa"))
    return SignerConfig(chain, key)


def signed_png(folder: Path, signer: SignerConfig, rec: ProvenanceRecord | None = None) -> Path:
    rec = rec or record()
    path = folder / "tile.png"
    write_png(path, pixels(), rec)
    sign_file(path, rec, signer)
    return path


def tamper_pixels(path: Path) -> None:
    """Change one pixel value inside the PNG's image data, keeping the PNG valid (chunk CRCs recomputed)."""
    data = path.read_bytes()
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    raw = bytearray(zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT")))
    raw[1] ^= 0x40  # first pixel's red byte (byte 0 of a row is its filter type)
    out, idat_done = [data[:8]], False
    for kind, body in chunks:
        if kind == b"IDAT":
            if idat_done:
                continue
            body, idat_done = zlib.compress(bytes(raw)), True
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    path.write_bytes(b"".join(out))


def test_sign_then_read_round_trips_the_record(tmp_path, signer):
    rec = record()
    path = signed_png(tmp_path, signer, rec)
    credentials = read_credentials(path)
    assert credentials["present"] is True
    assert credentials["record"] == rec.to_dict()
    assert ProvenanceRecord.from_dict(credentials["record"]) == rec
    assert credentials["claim_generator"] == f"terrasynth/{__version__}"
    assert credentials["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert credentials["signer"]["issuer"] == "terrasynth tests"
    assert credentials["signer"]["common_name"] == "terrasynth test signer"
    # A throwaway CA is in no trust list: the signature holds, the signer is not vouched for, and we say so.
    assert credentials["signature_valid"] and credentials["content_intact"] and not credentials["trusted"]
    assert credentials["status"] == "signed, signature intact, signer not in trust list"
    assert any(f.startswith("signingCredential.untrusted") for f in credentials["failures"])
    # The file is still an ordinary PNG with its metadata, and nothing is left beside it.
    assert read_provenance(path) == rec
    assert np.array_equal(np.asarray(Image.open(path)), pixels())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tile.png"]


def test_tampered_pixels_fail_validation(tmp_path, signer):
    path = signed_png(tmp_path, signer)
    tamper_pixels(path)
    assert not np.array_equal(np.asarray(Image.open(path)), pixels())
    credentials = read_credentials(path)
    assert credentials["signature_valid"] and not credentials["content_intact"]
    assert credentials["validation_state"] == "Invalid"
    assert "changed after signing" in credentials["status"]
    assert any(f.startswith("assertion.dataHash.mismatch") for f in credentials["failures"])


def test_jpeg_and_geotiff_can_be_signed(tmp_path, signer):
    from tests.fakes import UTM_33N, grid_transform

    from terrasynth.generate.provenance import write_geotiff

    rec = record()
    jpeg = tmp_path / "tile.jpg"
    Image.fromarray(pixels()).save(jpeg, quality=90)
    tiff = tmp_path / "tile.tif"
    write_geotiff(tiff, pixels(), rec, UTM_33N, grid_transform())
    for path in (jpeg, tiff):
        sign_file(path, rec, signer)
        credentials = read_credentials(path)
        assert credentials["record"] == rec.to_dict(), path
        assert credentials["status"] == "signed, signature intact, signer not in trust list", path
    assert read_provenance(tiff) == rec


def test_bad_certificates_and_keys_are_named(tmp_path, signer, capsys):
    missing = tmp_path / "nope.pem"
    with pytest.raises(InputError, match="nope.pem: C2PA certificate chain file not found"):
        SignerConfig(missing, signer.private_key_path)
    with pytest.raises(InputError, match="nope.pem: C2PA private key file not found"):
        signer_config_from(signer.cert_chain_path, missing, environ={})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(InputError, match="garbage.pem: not a PEM certificate chain"):
        signer_config_from(garbage, signer.private_key_path, environ={})
    with pytest.raises(InputError, match="garbage.pem: not an unencrypted PEM private key"):
        signer_config_from(signer.cert_chain_path, garbage, environ={})
    other_chain, other_key = make_chain(tmp_path / "other")
    with pytest.raises(InputError, match=r"other/key.pem: private key does not match"):
        signer_config_from(signer.cert_chain_path, other_key, environ={})
    with pytest.raises(InputError, match="--c2pa-cert needs --c2pa-key"):
        signer_config_from(signer.cert_chain_path, None, environ={})
    with pytest.raises(ValueError, match="algorithm"):
        SignerConfig(signer.cert_chain_path, signer.private_key_path, algorithm="md5")

    # Through the CLI: exit status 2 and the file named, before any model is loaded.
    assert main(["generate", "--out", str(tmp_path / "out"), "--c2pa-cert", str(missing), "--c2pa-key", "k"]) == 2
    assert "nope.pem: C2PA certificate chain file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_certificate_c2pa_refuses_leaves_no_file(tmp_path, signer):
    chain, key = make_chain(tmp_path / "no-eku", extended_key_usage=False)
    refused = SignerConfig(chain, key)
    path = tmp_path / "tile.png"
    write_png(path, pixels(), record())
    before = path.read_bytes()
    with pytest.raises(InputError, match="chain.pem: cannot sign tile.png"):
        sign_file(path, record(), refused)
    assert path.read_bytes() == before  # left as it was, no temporary beside it
    images = torch.from_numpy(pixels()).permute(2, 0, 1)[None] / 255.0
    with pytest.raises(InputError, match="cannot sign"):
        write_generated(images, [record()], tmp_path / "out", watermark=False, signer=refused)
    assert list((tmp_path / "out").iterdir()) == []


def test_without_a_certificate_nothing_changes(tmp_path, signer):
    assert signer_config_from(None, None, environ={}) is None
    images = torch.from_numpy(pixels()).permute(2, 0, 1)[None] / 255.0
    path = write_generated(images, [record()], tmp_path / "plain", watermark=False)[0]
    reference = tmp_path / "reference.png"
    write_png(reference, to_uint8(images[0]), dataclasses.replace(record(), watermark="none"))
    assert path.read_bytes() == reference.read_bytes()
    assert read_credentials(path) is None

    # Configured through the environment (flags win over it), the same call signs.
    environ = {CERT_ENV: str(signer.cert_chain_path), KEY_ENV: str(signer.private_key_path)}
    assert signer_config_from(None, None, environ=environ) == signer
    with pytest.raises(InputError, match="nope.pem"):
        signer_config_from(tmp_path / "nope.pem", None, environ=environ)
    signed = write_generated(images, [record()], tmp_path / "signed", watermark=False, signer=signer)[0]
    assert read_credentials(signed)["record"] == read_provenance(signed).to_dict()
    assert sorted(p.name for p in (tmp_path / "signed").iterdir()) == [signed.name]


def test_verify_reports_content_credentials(tmp_path, signer, capsys):
    images = torch.from_numpy(pixels(size=32)).permute(2, 0, 1)[None] / 255.0
    signed = write_generated(images, [record(3, 32)], tmp_path / "signed", signer=signer)[0]
    result = verify_file(signed)
    credentials = result["content_credentials"]
    assert credentials["status"] == "signed, signature intact, signer not in trust list"
    assert credentials["matches_metadata"] is True
    assert "Content Credentials signed, signature intact, signer not in trust list" in result["summary"]
    assert main(["verify", str(signed)]) == 0
    out = capsys.readouterr().out
    assert "content credentials (C2PA): signed, signature intact, signer not in trust list" in out
    assert "signer: terrasynth test signer (issuer terrasynth tests" in out

    tamper_pixels(signed)
    assert "changed after signing" in verify_file(signed)["content_credentials"]["status"]

    plain = write_generated(images, [record(3, 32)], tmp_path / "plain")[0]
    result = verify_file(plain)
    assert result["content_credentials"] is None and "Content Credentials" not in result["summary"]
    assert main(["verify", str(plain)]) == 0
    assert "content credentials (C2PA): none" in capsys.readouterr().out


def test_missing_c2pa_package_is_an_input_error_with_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "tile.png"
    write_png(path, pixels(), record())
    (tmp_path / "chain.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    config = SignerConfig(tmp_path / "chain.pem", tmp_path / "key.pem")
    monkeypatch.setitem(sys.modules, "c2pa", None)  # import c2pa → ImportError
    with pytest.raises(InputError, match=r"pip install 'terrasynth\[c2pa\]'"):
        sign_file(path, record(), config)
    with pytest.raises(InputError, match="c2pa-python"):
        signer_config_from(config.cert_chain_path, config.private_key_path, environ={})
    credentials = verify_file(path)["content_credentials"]
    assert credentials["present"] is None and "terrasynth[c2pa]" in credentials["error"]
