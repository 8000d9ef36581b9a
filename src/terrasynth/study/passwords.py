"""The admin password, kept only as a salted scrypt hash and checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from ..errors import InputError

DEFAULT_PASSWORD_ENV = "TERRASYNTH_STUDY_ADMIN_PASSWORD"
MIN_PASSWORD_LENGTH = 8
# scrypt cost (RFC 7914): 2**14 × 8 × 128 bytes = 16 MiB and ~50 ms a check on one core.
_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex) of ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    return f"{_PREFIX}${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def is_password_hash(text: str) -> bool:
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return False
    try:
        n, r, p = (int(v) for v in parts[1:4])
        bytes.fromhex(parts[4])
        bytes.fromhex(parts[5])
    except ValueError:
        return False
    return n > 1 and n & (n - 1) == 0 and r > 0 and p > 0


def verify_password(password: str, stored_hash: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; the digests are compared in constant time."""
    if not is_password_hash(stored_hash):
        return False
    _, n, r, p, salt, expected = stored_hash.split("$")
    digest = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(digest, bytes.fromhex(expected))


def admin_password_hash_from_env(variable: str = DEFAULT_PASSWORD_ENV) -> str:
    """The admin password hash from environment variable ``variable``, which holds the password itself or a
    hash made by :func:`hash_password`. The plaintext is hashed at once and not kept."""
    value = os.environ.get(variable)
    if not value:
        raise InputError(
            None,
            f"no admin password: environment variable {variable} is not set",
            f"export {variable}='a long passphrase', or a hash made by terrasynth.study.passwords.hash_password",
        )
    if is_password_hash(value):
        return value
    if len(value) < MIN_PASSWORD_LENGTH:
        raise InputError(None, f"the admin password in {variable} is shorter than {MIN_PASSWORD_LENGTH} characters")
    return hash_password(value)
