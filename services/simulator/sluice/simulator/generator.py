r"""What the simulator answers: deterministic text, usage and per-request directives.

Directives let a test or demo ask for a behaviour in the prompt itself, so
concurrent requests never share control state: ``[[sim:status=529]]``,
``[[sim:tokens=5]]``, ``[[sim:disconnect_after=3]]`` (drop the connection after
three deltas), ``[[sim:error_after=3]]`` (an SSE error event after three
deltas), ``[[sim:ttft_ms=200]]``, ``[[sim:itl_ms=50]]``. ``[[sim:echo]] text``
answers with the text after the marker, in deltas of ``[[sim:chunk_chars=N]]``
characters (a word each when not given), ``\uXXXX`` escapes decoded: what
output-filter tests and demos need the model to say, written so that the
input filter does not see it. (Whole scripted answers are `scripts.py`'s.)

Token counts are the simulator's own estimate (about four characters a
token; Claude's tokenizer is not public), used alike for usage, the context
window check and count_tokens. The prompt cache follows the prompt caching
docs (https://platform.claude.com/docs/en/build-with-claude/prompt-caching):
breakpoints on tools, system and message blocks (and a top-level
`cache_control` on the last block), a lookback of 20 blocks from each
breakpoint for an earlier write, a per-model minimum prefix length, and
writes reported per TTL in ``usage.cache_creation``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sluice.wire import jsontext
from sluice.wire.request import tokens_for_chars

_DIRECTIVE = re.compile(r"\[\[sim:([a-z_]+)=([0-9.]+)\]\]")
_ECHO = "[[sim:echo]]"
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_WORDS = (
    "the quick brown fox jumps over a lazy dog while streams of tokens flow through "
    "gateways routers caches and policies to reach every tenant in its own region"
).split()
# Shortest cacheable prefix when the model does not say (catalog
# `min_cacheable_tokens` does for every catalog model).
MIN_CACHEABLE_TOKENS = 1024
# Blocks the API looks back from a breakpoint for an earlier cache write.
CACHE_LOOKBACK_BLOCKS = 20
_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
_IMAGE_TOKENS = 1600  # ~ (width*height)/750 for a mid-size image; not decoded
_DOCUMENT_TOKENS = 3000  # a PDF page or two; not decoded
_PER_MESSAGE_TOKENS = 4


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
            try:
                setattr(found, name, float(value) if name.endswith("_ms") else int(float(value)))
            except (ValueError, OverflowError):  # "1.2.3", "9" * 400
                continue
    at = text.find(_ECHO)
    if at >= 0:
        echoed = _DIRECTIVE.sub("", text[at + len(_ECHO):]).strip()
        found.echo = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), echoed)
    return found


def echo_chunks(text: str, chunk_chars: int | None) -> list[str]:
    """The echoed answer as deltas: chunk_chars characters each, or a word each."""
    if chunk_chars and chunk_chars > 0:
        return [text[i:i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    return re.findall(r"\s*\S+", text) or [text]


def text_of(content: Any) -> str:
    """The text of a turn's content: a string, text blocks, and the text in
    tool results (at any depth). Anything malformed reads as no text."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    stack: list[Any] = [content] if isinstance(content, list) else []
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            if item.get("type") == "text" and isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif item.get("type") == "tool_result" and isinstance(item.get("content"), (str, list)):
                stack.append(item["content"])
    return "".join(parts)


def last_user_text(body: Any) -> str:
    """The text of the last user turn of any body (malformed: "")."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return ""
    for message in reversed(body["messages"]):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def estimate_tokens(text: str) -> int:
    """The simulator's token count of a text: the same four-characters
    rule as Sluice's estimate, so tests can predict it."""
    return tokens_for_chars(len(text))


def completion_words(prompt: str, count: int) -> list[str]:
    """`count` words chosen by the prompt's hash: the same prompt, the same answer."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    out = []
    for i in range(count):
        seed = (seed * 6364136223846793005 + 1442695040888963407 + i) & 0xFFFFFFFFFFFFFFFF
        out.append(_WORDS[seed % len(_WORDS)])
    return [w if i == 0 else " " + w for i, w in enumerate(out)]


# -- token counts ----------------------------------------------------------------------


def block_tokens(block: Any) -> int:
    """Estimated tokens of one content block (or string content): the text
    the model reads, tool calls' names and JSON input, a fixed cost for
    images and binary documents, the JSON of block types it does not know.
    Thinking blocks count nothing (the API strips earlier turns' thinking)."""
    chars, extra = 0, 0
    stack: list[Any] = [block]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
            continue
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            chars += len(item["text"]) if isinstance(item.get("text"), str) else 0
        elif kind == "tool_result":
            if isinstance(item.get("content"), (str, list)):
                stack.append(item["content"])
        elif kind in ("tool_use", "server_tool_use"):
            chars += len(str(item.get("name", ""))) + len(jsontext.dumps(item.get("input", {})))
        elif kind in ("thinking", "redacted_thinking"):
            pass
        elif kind == "image":
            extra += _IMAGE_TOKENS
        elif kind == "document":
            source = item.get("source")
            if not isinstance(source, dict):
                source = {}
            source_type = source.get("type")
            if source_type == "text" and isinstance(source.get("data"), str):
                chars += len(source["data"])
            elif source_type == "content" and isinstance(source.get("content"), (str, list)):
                stack.append(source["content"])
            else:
                extra += _DOCUMENT_TOKENS
            for name in ("title", "context"):
                chars += len(item[name]) if isinstance(item.get(name), str) else 0
        elif kind == "search_result":
            chars += len(item["title"]) if isinstance(item.get("title"), str) else 0
            if isinstance(item.get("content"), list):
                stack.append(item["content"])
        else:
            chars += len(jsontext.dumps(item))
    return (chars + 3) // 4 + extra


@dataclass
class Prompt:
    """A request's prompt as the cache sees it: one piece per tool, system
    block and message block, in prefix order (tools, system, messages)."""

    pieces: list[tuple[str, Any]] = field(default_factory=list)  # (role, block)
    tokens: list[int] = field(default_factory=list)
    breakpoints: list[tuple[int, str]] = field(default_factory=list)  # (piece index, "5m" | "1h")
    overhead: int = 0  # per-message framing

    @property
    def total(self) -> int:
        """Total input tokens (input + cache writes + cache reads)."""
        return max(1, sum(self.tokens) + self.overhead)

    def add(self, role: str, block: Any, tokens: int) -> None:
        self.pieces.append((role, block))
        self.tokens.append(tokens)
        cache_control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(cache_control, dict):
            self.breakpoints.append((len(self.pieces) - 1, _ttl(cache_control)))

    def key(self, index: int) -> bytes:
        """The identity of a piece: its role and JSON, cache_control left out."""
        role, block = self.pieces[index]
        if isinstance(block, dict) and "cache_control" in block:
            block = {k: v for k, v in block.items() if k != "cache_control"}
        return (role + ":" + jsontext.dumps(block)).encode("utf-8", "surrogatepass")


def measure(body: dict[str, Any]) -> Prompt:
    """The prompt of a (checked) request body."""
    prompt = Prompt()
    for tool in body.get("tools") or ():
        shown = {k: v for k, v in tool.items() if k != "cache_control"} if isinstance(tool, dict) else {}
        prompt.add("tool", tool, estimate_tokens(jsontext.dumps(shown)))
    system = body.get("system")
    for block in [system] if isinstance(system, str) else (system or ()):
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        prompt.add("system", block, block_tokens(block))
    messages = body.get("messages") or ()
    for message in messages:
        role = str(message.get("role"))
        content = message.get("content")
        for block in [{"type": "text", "text": content}] if isinstance(content, str) else (content or ()):
            prompt.add(role, block, block_tokens(block))
    prompt.overhead = _PER_MESSAGE_TOKENS * len(messages)
    top = body.get("cache_control")
    if isinstance(top, dict) and prompt.pieces:
        last = len(prompt.pieces) - 1
        if not prompt.breakpoints or prompt.breakpoints[-1][0] != last:
            prompt.breakpoints.append((last, _ttl(top)))
    return prompt


@dataclass(frozen=True)
class CacheUse:
    input_tokens: int
    creation_5m: int = 0
    creation_1h: int = 0
    read: int = 0

    @property
    def creation(self) -> int:
        return self.creation_5m + self.creation_1h

    def usage(self) -> dict[str, Any]:
        """The usage fields for input, in the API's order."""
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": self.creation,
                "cache_read_input_tokens": self.read,
                "cache_creation": {"ephemeral_5m_input_tokens": self.creation_5m,
                                   "ephemeral_1h_input_tokens": self.creation_1h}}


@dataclass
class PromptCache:
    """Anthropic-style prefix cache: prefix hash -> (expiry (monotonic), ttl seconds)."""

    entries: dict[str, tuple[float, float]] = field(default_factory=dict)

    def account(self, prompt: Prompt, min_tokens: int = MIN_CACHEABLE_TOKENS) -> CacheUse:
        """The input split for a request, updating the cache.

        Reads the longest cached prefix found at a breakpoint or up to 20
        blocks before one (refreshing its TTL); then writes each later
        breakpoint whose prefix is at least `min_tokens` long. The tokens
        between one write and the next count under the later breakpoint's
        TTL, so with 1h breakpoints before 5m ones (as the API requires)
        the 1h part is reported first."""
        total = prompt.total
        if not prompt.breakpoints:
            return CacheUse(total)
        last = prompt.breakpoints[-1][0]
        hashes: list[str] = []
        cumulative: list[int] = []
        hasher = hashlib.sha256()
        running = 0
        for index, tokens in enumerate(prompt.tokens[:last + 1]):
            hasher.update(hashlib.sha256(prompt.key(index)).digest())
            hashes.append(hasher.copy().hexdigest())
            running += tokens
            cumulative.append(running)
        now = time.monotonic()
        hit = -1
        for position, _ in prompt.breakpoints:
            for q in range(position, max(-1, position - CACHE_LOOKBACK_BLOCKS), -1):
                if q <= hit:
                    break
                entry = self.entries.get(hashes[q])
                if entry is not None and entry[0] > now:
                    hit = q
                    break
        read = 0
        if hit >= 0:
            read = cumulative[hit]
            ttl = self.entries[hashes[hit]][1]
            self.entries[hashes[hit]] = (now + ttl, ttl)
        written = {"5m": 0, "1h": 0}
        upto = read
        for position, ttl_name in prompt.breakpoints:
            if position <= hit or cumulative[position] < min_tokens or cumulative[position] <= upto:
                continue
            written[ttl_name] += cumulative[position] - upto
            upto = cumulative[position]
            seconds = _TTL_SECONDS[ttl_name]
            self.entries[hashes[position]] = (now + seconds, seconds)
        if len(self.entries) > 100_000:
            self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
        return CacheUse(total - read - written["5m"] - written["1h"], written["5m"], written["1h"], read)


def _ttl(cache_control: Any) -> str:
    return "1h" if isinstance(cache_control, dict) and cache_control.get("ttl") == "1h" else "5m"
