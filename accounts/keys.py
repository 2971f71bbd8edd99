"""API key format (B1): ``fd_u_`` or ``fd_sa_``, 192 random bits in base62, and a CRC32 checksum.

The checksum lets a mistyped or truncated key be rejected without touching the database, and the
fixed prefixes let secret scanners recognise a leaked key. Only a SHA-256 of the whole key and a
short lookup prefix are ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIXES = {"user": "fd_u_", "service_account": "fd_sa_"}
RANDOM_BYTES = 24
RANDOM_CHARS = 33  # base62 of 192 bits fits in 33 characters
CHECKSUM_CHARS = 6  # base62 of a 32-bit CRC
LOOKUP_CHARS = 12


def _base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_CHARS)


@dataclass(frozen=True)
class GeneratedKey:
    secret: str
    lookup_prefix: str
    secret_hash: str


@dataclass(frozen=True)
class ParsedKey:
    kind: str
    lookup_prefix: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate(kind: str) -> GeneratedKey:
    random_part = _base62(int.from_bytes(secrets.token_bytes(RANDOM_BYTES), "big"), RANDOM_CHARS)
    body = PREFIXES[kind] + random_part
    secret = body + _checksum(body)
    return GeneratedKey(secret=secret, lookup_prefix=lookup_prefix(kind, random_part), secret_hash=hash_secret(secret))


def lookup_prefix(kind: str, random_part: str) -> str:
    return PREFIXES[kind] + random_part[:LOOKUP_CHARS]


def parse(secret: str) -> ParsedKey | None:
    """Return the key's kind and lookup prefix, or None when it cannot be one of our keys."""
    for kind, prefix in PREFIXES.items():
        if not secret.startswith(prefix):
            continue
        rest = secret[len(prefix) :]
        if len(rest) != RANDOM_CHARS + CHECKSUM_CHARS or any(c not in ALPHABET for c in rest):
            return None
        body, checksum = secret[: -CHECKSUM_CHARS], secret[-CHECKSUM_CHARS:]
        if not hmac.compare_digest(_checksum(body), checksum):
            return None
        return ParsedKey(kind=kind, lookup_prefix=lookup_prefix(kind, rest), secret_hash=hash_secret(secret))
    return None


def matches(stored_hash: str, parsed: ParsedKey) -> bool:
    return hmac.compare_digest(stored_hash, parsed.secret_hash)
