"""Thinking block signatures the simulator can check.

The API signs each thinking block it returns and refuses a later request
whose assistant turn carries a thinking block that differs from what it
returned: ``messages.1.content.0: Invalid `signature` in `thinking` block``
(https://github.com/anthropics/claude-code/issues/10627; staff explanation in
https://github.com/anthropics/anthropic-sdk-python/issues/1598). The
simulator does the same with an HMAC-SHA256 of the thinking text under a
secret drawn when the process starts, so a test proves a gateway passed
thinking blocks back byte-exact by sending them back to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


class Signer:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def sign(self, thinking: str) -> str:
        """URL-safe base64 of HMAC-SHA256(secret, thinking text as UTF-8)."""
        digest = hmac.new(self._secret, thinking.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def verify(self, thinking: object, signature: object) -> bool:
        if not isinstance(thinking, str) or not isinstance(signature, str):
            return False
        return hmac.compare_digest(self.sign(thinking).encode("ascii"),
                                   signature.encode("utf-8", "surrogatepass"))
