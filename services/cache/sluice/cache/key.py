"""What makes two requests the same request for the response cache.

Documented rules (README, "Response cache"):
- Part of the key: the namespace (the tenant, or its shared namespace),
  the model name as sent (the store's address, see
  sluice.storage.response_cache),
  the model routing resolved the request to, the catalog version, the
  anthropic-version and the anthropic-beta set, the client's prompt
  version tag, and the body: system, messages, tools, tool_choice,
  thinking, max_tokens, stop_sequences, sampling parameters, output format
  and any other member, compared as canonical JSON (keys sorted).
- Left out of the digest, as they do not change the answer: `model` (the
  resolved one counts, the name as sent is in the address), `stream` (a stored answer replays as JSON or SSE),
  `metadata` (user_id identifies the end user, not the question),
  `service_tier` and `inference_geo` (where and how fast, not what), and
  `cache_control` marks (what the provider's prompt cache keeps, not what
  the model says).
- Never cached (bypass): requests with tools the provider runs (web search,
  web fetch, code execution, and any tool type Sluice does not know as one
  the client runs), MCP servers or a container, whose answers depend on
  the world at the time.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from sluice.auth.v1 import principal_pb2

_IGNORED = frozenset({"model", "stream", "metadata", "service_tier", "inference_geo", "cache_control"})
# Tool types the client runs (its own, and Anthropic-defined ones it
# executes): anything else is run by the provider.
_CLIENT_TOOL_TYPE = re.compile(r"^(custom|(bash|text_editor|computer|memory)_\d{8})$")
_KEY_VERSION = b"sluice-rc-1"


def server_tools(doc: dict[str, Any]) -> bool:
    """The request asks for tools run by the provider (their answers change
    with the world: any typed tool not known as the client's), MCP servers
    or a container."""
    if doc.get("mcp_servers") or doc.get("container"):
        return True
    tools = doc.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, dict) and t.get("type") is not None
        and not (isinstance(t["type"], str) and _CLIENT_TOOL_TYPE.match(t["type"])) for t in tools)


def category(doc: dict[str, Any], task: str) -> str:
    """The request's TTL category: routing's task label when it classified
    the request, else its shape: "tools", "media" (images, documents),
    "thinking" or "text"."""
    if task:
        return task
    if doc.get("tools"):
        return "tools"
    for message in doc.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") in ("image", "document")
                                             for b in content):
            return "media"
    thinking = doc.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        return "thinking"
    return "text"


def ttl_for(policy: principal_pb2.CachePolicy, kind: str, default_s: int, max_s: int) -> int:
    """Entry lifetime, seconds: the tenant's for the category, else the
    tenant's, else the service default; at most max_s."""
    return min(policy.ttl_by_category.get(kind) or policy.ttl_seconds or default_s, max_s)


def _unmarked(value: Any) -> Any:
    """A block (or list of blocks) without cache_control marks, nested
    tool_result content included; other values as they are."""
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    if isinstance(value, dict):
        if "cache_control" not in value and not isinstance(value.get("content"), list):
            return value
        return {k: (_unmarked(v) if k == "content" else v) for k, v in value.items() if k != "cache_control"}
    return value


def request_digest(doc: dict[str, Any], namespace: str, model: str, catalog_version: str, anthropic_version: str,
                   betas: list[str], prompt_version: str, marked: bool = True) -> bytes:
    """32-byte SHA-256 of the request's identity (module doc). `marked`:
    the body may hold cache_control marks (False skips looking for them)."""
    body = {k: v for k, v in doc.items() if k not in _IGNORED}
    if marked:
        for member in ("system", "tools", "messages"):
            if isinstance(body.get(member), list):
                body[member] = [_unmarked(m) if member != "messages" or not isinstance(m, dict)
                                else {**m, "content": _unmarked(m.get("content"))} for m in body[member]]
    identity = [namespace, model, catalog_version, anthropic_version, sorted(betas), prompt_version, body]
    return hashlib.sha256(_KEY_VERSION + orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).digest()
