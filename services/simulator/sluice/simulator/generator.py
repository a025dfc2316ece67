r"""What the simulator answers: deterministic text, usage and per-request directives.

Directives let a test or demo ask for a behaviour in the prompt itself, so
concurrent requests never share control state: ``[[sim:status=529]]``,
``[[sim:tokens=5]]``, ``[[sim:disconnect_after=3]]`` (drop the connection after
three deltas), ``[[sim:error_after=3]]`` (an SSE error event after three
deltas), ``[[sim:ttft_ms=200]]``, ``[[sim:itl_ms=50]]``. ``[[sim:echo]] text``
answers with the text after the marker, in deltas of ``[[sim:chunk_chars=N]]``
characters (a word each when not given), ``\uXXXX`` escapes decoded: what
output-filter tests and demos need the model to say, written so that the
input filter does not see it.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

_DIRECTIVE = re.compile(r"\[\[sim:([a-z_]+)=([0-9.]+)\]\]")
_ECHO = "[[sim:echo]]"
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_WORDS = (
    "the quick brown fox jumps over a lazy dog while streams of tokens flow through "
    "gateways routers caches and policies to reach every tenant in its own region"
).split()
# Shortest cacheable prefix the simulator honours, in (estimated) tokens.
MIN_CACHEABLE_TOKENS = 1024


@dataclass
class Directives:
    status: int | None = None
    tokens: int | None = None
    disconnect_after: int | None = None
    error_after: int | None = None
    ttft_ms: float | None = None
    itl_ms: float | None = None
    chunk_chars: int | None = None
    echo: str | None = None  # the answer to give, verbatim


def directives(text: str) -> Directives:
    found = Directives()
    for name, value in _DIRECTIVE.findall(text):
        if hasattr(found, name) and name != "echo":
            setattr(found, name, float(value) if name.endswith("_ms") else int(float(value)))
    at = text.find(_ECHO)
    if at >= 0:
        echoed = _DIRECTIVE.sub("", text[at + len(_ECHO):]).strip()
        found.echo = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), echoed)
    return found


def echo_chunks(text: str, chunk_chars: int | None) -> list[str]:
    """The echoed answer as deltas: chunk_chars characters each, or a word each."""
    if chunk_chars:
        return [text[i:i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    return re.findall(r"\s*\S+", text) or [text]


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if isinstance(block, dict):
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                parts.append(text_of(block.get("content")))
    return "".join(parts)


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def completion_words(prompt: str, count: int) -> list[str]:
    """`count` words chosen by the prompt's hash: the same prompt, the same answer."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    out = []
    for i in range(count):
        seed = (seed * 6364136223846793005 + 1442695040888963407 + i) & 0xFFFFFFFFFFFFFFFF
        out.append(_WORDS[seed % len(_WORDS)])
    return [w if i == 0 else " " + w for i, w in enumerate(out)]


@dataclass
class PromptCache:
    """Anthropic-style prefix cache: prefix hash -> expiry (monotonic)."""

    entries: dict[str, float] = field(default_factory=dict)

    def account(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(input, cache_creation, cache_read) tokens for a request.

        The prefix runs in API order (tools, system, messages) up to the last
        block with cache_control; it is read if cached, else written when long
        enough. Entries live 5 minutes (or 1 hour) and are refreshed on use.
        """
        pieces: list[str] = []
        prefix_len = 0
        ttl = 300.0
        for tool in body.get("tools") or ():
            pieces.append(repr(tool))
            if isinstance(tool, dict) and tool.get("cache_control"):
                prefix_len, ttl = len(pieces), _ttl(tool["cache_control"])
        system = body.get("system")
        for block in [system] if isinstance(system, str) else (system or ()):
            pieces.append(text_of([block]) if isinstance(block, dict) else str(block))
            if isinstance(block, dict) and block.get("cache_control"):
                prefix_len, ttl = len(pieces), _ttl(block["cache_control"])
        for msg in body.get("messages") or ():
            content = msg.get("content") if isinstance(msg, dict) else None
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else (content or ())
            for block in blocks:
                pieces.append(text_of([block]) if isinstance(block, dict) else "")
                if isinstance(block, dict) and block.get("cache_control"):
                    prefix_len, ttl = len(pieces), _ttl(block["cache_control"])
        total = max(1, sum(estimate_tokens(p) for p in pieces) + 4 * len(body.get("messages") or ()))
        if not prefix_len:
            return total, 0, 0
        prefix_tokens = sum(estimate_tokens(p) for p in pieces[:prefix_len])
        if prefix_tokens < MIN_CACHEABLE_TOKENS:
            return total, 0, 0
        key = hashlib.sha256("\x00".join(pieces[:prefix_len]).encode()).hexdigest()
        now = time.monotonic()
        hit = self.entries.get(key, 0) > now
        self.entries[key] = now + ttl
        if len(self.entries) > 100_000:
            self.entries = {k: v for k, v in self.entries.items() if v > now}
        rest = max(total - prefix_tokens, 0)
        return (rest, 0, prefix_tokens) if hit else (rest, prefix_tokens, 0)


def _ttl(cache_control: Any) -> float:
    return 3600.0 if isinstance(cache_control, dict) and cache_control.get("ttl") == "1h" else 300.0
