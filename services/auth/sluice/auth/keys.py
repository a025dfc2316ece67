"""API key format and hashing.

A key is ``sk-sluice-<key id>-<secret>``. Only HMAC-SHA256(pepper, salt ||
secret) is stored: the secret is 192 random bits, so a fast keyed hash is as
strong as a slow one here, and the pepper (a server secret, not in the store)
means a leaked store alone cannot check guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "sk-sluice-"
MAX_KEY_LENGTH = 200
_KEY = re.compile(r"^sk-sluice-([a-z0-9]{4,32})-([A-Za-z0-9]{32,128})$")


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str


def parse(raw: str) -> ParsedKey | None:
    """The key's parts, or None if it is not a well-formed Sluice key."""
    if len(raw) > MAX_KEY_LENGTH:
        return None
    match = _KEY.match(raw)
    if not match:
        return None
    return ParsedKey(match.group(1), match.group(2))


def generate(key_id: str | None = None) -> str:
    key_id = key_id or secrets.token_hex(6)
    return f"{PREFIX}{key_id}-{secrets.token_hex(24)}"


def digest(pepper: bytes, salt: bytes, secret: str) -> bytes:
    return hmac.new(pepper, salt + secret.encode(), hashlib.sha256).digest()


def matches(pepper: bytes, salt: bytes, secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(digest(pepper, salt, secret), stored)
