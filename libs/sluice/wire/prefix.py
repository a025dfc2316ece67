"""Prompt-prefix identity as the API's prompt cache sees it.

The prompt is read in the API's prefix order: tools, then system blocks,
then each message's content blocks (a string is one text block). A
`cache_control` mark on a block is a breakpoint; a top-level `cache_control`
(automatic caching) is one on the last block. The identity of the prefix up
to a block is a digest (SHA-256, 16 bytes kept) running over the blocks before it and the block
itself, each as (role, canonical JSON without its cache_control), so a mark
moved or added does not change what an earlier prefix is. At a breakpoint
the API reads the longest cached prefix ending there or up to 20 blocks
before it (LOOKBACK_BLOCKS), and writes the prefix ending there if at least
the model's minimum cacheable length; entries live 5 minutes or 1 hour,
refreshed by each read. Source: the prompt caching guide
(https://platform.claude.com/docs/en/build-with-claude/prompt-caching).

Token figures here are Sluice's estimates (`tokens_for_chars`); the ledger
(`sluice.storage.prefix_ledger`) replaces them with the upstream's counts
once usage reports them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.wire.request import MAX_CACHE_BREAKPOINTS, block_text, tokens_for_chars

# Blocks before a breakpoint the API searches for an earlier write.
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300, "1h": 3600}
_DIGEST = 16
# Digits masked to find content that differs between requests only in a
# number (a timestamp, a request id): the prefix's "shape".
_DIGITS = bytes.maketrans(b"123456789", b"000000000")


@dataclass(frozen=True)
class Breakpoint:
    """A cache_control breakpoint: the block it ends on (index in prefix
    order), its lifetime in seconds (300 or 3600) and the prefix's
    estimated tokens up to and including that block."""

    block: int
    ttl_seconds: int
    estimated_tokens: int


@dataclass
class PrefixChain:
    """A request's prefix identities up to its last breakpoint.

    `hashes[i]` is the 16-byte identity of the prefix ending at block i;
    `tokens[i]` its estimated tokens (cumulative); `breakpoints` in prefix
    order. `_pieces` keeps each block's canonical bytes for `shape`."""

    hashes: list[bytes]
    tokens: list[int]
    breakpoints: list[Breakpoint]
    _pieces: list[bytes] = field(default_factory=list, repr=False)
    _namespace: bytes = b""

    def positions(self) -> list[int]:
        """Blocks whose prefixes a read may find: each breakpoint and the
        LOOKBACK_BLOCKS blocks before it, longest first, each once."""
        seen: set[int] = set()
        for point in self.breakpoints:
            seen.update(range(max(0, point.block - LOOKBACK_BLOCKS + 1), point.block + 1))
        return sorted(seen, reverse=True)

    def longest_hit(self, warm: set[int]) -> int:
        """The block the API would read up to, given the blocks whose
        prefixes are warm: for each breakpoint in order, the longest warm
        prefix ending there or within the lookback (-1: none)."""
        hit = -1
        for point in self.breakpoints:
            for block in range(point.block, max(-1, point.block - LOOKBACK_BLOCKS), -1):
                if block <= hit:
                    break
                if block in warm:
                    hit = block
                    break
        return hit

    def shape(self, block: int) -> bytes:
        """Identity of the prefix ending at `block` with every digit read
        as 0: equal shapes with different identities mean content that
        changes only in numbers from one request to the next."""
        digest = hashlib.sha256(self._namespace)
        for piece in self._pieces[:block + 1]:
            digest.update(piece.translate(_DIGITS))
        return digest.digest()[:_DIGEST]


def _chars(block: Any) -> int:
    """Characters a block adds to the prompt's estimate (a plain text
    block's own text; others through the codec's block_text)."""
    if not isinstance(block, dict):
        return 0
    if block.get("type") == "text" and isinstance(block.get("text"), str):
        return len(block["text"])
    return len(block_text(block))


def _canonical(role: bytes, block: Any) -> bytes:
    if isinstance(block, dict) and "cache_control" in block:
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return role + b"\x1f" + orjson.dumps(block, option=orjson.OPT_SORT_KEYS) + b"\x1e"


def prefix_chain(doc: dict[str, Any], namespace: str) -> PrefixChain | None:
    """The prefix identities of a parsed Messages request body `doc` (as
    `MessagesRequest.doc`, or any dict of that shape; members of the wrong
    type are skipped, the API refuses them anyway) within `namespace`
    (a tenant or a shared namespace). None when no block is marked, or
    when more are than the API takes (MAX_CACHE_BREAKPOINTS: it refuses such a
    request, so there is nothing to forecast)."""
    blocks: list[tuple[bytes, Any]] = []
    tools = doc.get("tools")
    if isinstance(tools, list):
        blocks += [(b"tool", tool) for tool in tools]
    system = doc.get("system")
    if isinstance(system, str):
        blocks.append((b"system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        blocks += [(b"system", block) for block in system]
    messages = doc.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        role = str(message.get("role")).encode("utf-8", "surrogatepass")
        content = message.get("content")
        if isinstance(content, str):
            blocks.append((role, {"type": "text", "text": content}))
        elif isinstance(content, list):
            blocks += [(role, block) for block in content]
    marks = [(i, _ttl(block["cache_control"])) for i, (_role, block) in enumerate(blocks)
             if type(block) is dict and isinstance(block.get("cache_control"), dict)]
    top = doc.get("cache_control")
    if isinstance(top, dict) and blocks and (not marks or marks[-1][0] != len(blocks) - 1):
        marks.append((len(blocks) - 1, _ttl(top)))
    if not marks or len(marks) > MAX_CACHE_BREAKPOINTS:
        return None
    try:
        return _chain(blocks, marks, namespace)
    except (orjson.JSONEncodeError, UnicodeEncodeError, RecursionError):
        return None  # nested deeper than the encoder goes, or not text: no forecast


def _chain(blocks: list[tuple[bytes, Any]], marks: list[tuple[int, str]], namespace: str) -> PrefixChain:
    last = marks[-1][0]
    space = namespace.encode("utf-8", "surrogatepass")
    hashes, tokens, pieces = [], [], []
    # One running SHA-256 over the pieces (hardware-assisted here, the
    # cheaper digest for long system prompts); a copy at each block names
    # the prefix ending there (16 bytes kept).
    running = hashlib.sha256(space)
    chars = 0
    for role, block in blocks[:last + 1]:
        text = block.get("text") if type(block) is dict and block.get("type") == "text" else None
        if type(text) is str and len(block) - ("cache_control" in block) == 2:
            # A plain text block, the common case: its text, without a JSON round.
            piece = b"%s\x1ftext\x1f%s\x1e" % (role, text.encode("utf-8", "surrogatepass"))
            chars += len(text)
        else:
            piece = _canonical(role, block)
            chars += (len(piece) if role == b"tool" else _chars(block))
        pieces.append(piece)
        running.update(piece)
        hashes.append(running.copy().digest()[:_DIGEST])
        tokens.append(tokens_for_chars(chars))
    points = [Breakpoint(block, TTL_SECONDS[ttl], tokens[block]) for block, ttl in marks]
    return PrefixChain(hashes, tokens, points, pieces, space)


def _ttl(mark: dict[str, Any]) -> str:
    return "1h" if mark.get("ttl") == "1h" else "5m"
