"""Checks on a request that both the gRPC API and the HTTP facade apply.

Each failure names the field by its JSON path (``messages.0.content``), the
way Anthropic's API does, and is reported as a BadRequest field violation.
"""

from __future__ import annotations

import re

from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import SluiceError

MAX_TOKENS_LIMIT = 1_000_000
MAX_STOP_SEQUENCES = 64
MAX_CACHE_BREAKPOINTS = 4
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def _bad(field: str, description: str) -> SluiceError:
    return SluiceError.bad_request(field, description)


def _check_blocks(blocks: list[m.ContentBlock], path: str, counter: list[int]) -> None:
    for j, block in enumerate(blocks):
        where = f"{path}.{j}"
        kind = block.WhichOneof("block")
        if kind is None:
            raise _bad(where, "content block has no type")
        if kind == "text" and not block.text.text:
            raise _bad(f"{where}.text", "text content blocks must be non-empty")
        if kind == "image":
            source = block.image.WhichOneof("source")
            if source is None:
                raise _bad(f"{where}.source", "image needs a base64 or url source")
            if source == "base64" and not (block.image.base64.data and block.image.base64.media_type):
                raise _bad(f"{where}.source", "base64 image needs media_type and data")
        if kind == "tool_use" and not (block.tool_use.id and block.tool_use.name):
            raise _bad(where, "tool_use needs id and name")
        if kind == "tool_result":
            if not block.tool_result.tool_use_id:
                raise _bad(f"{where}.tool_use_id", "Field required")
            _check_blocks(list(block.tool_result.content), f"{where}.content", counter)
        if block.HasField("cache_control"):
            counter[0] += 1


def validate(params: m.MessageParams) -> None:
    """Raises SluiceError(INVALID_REQUEST) naming the first bad field."""
    if params.max_tokens < 1:
        raise _bad("max_tokens", "must be at least 1")
    if params.max_tokens > MAX_TOKENS_LIMIT:
        raise _bad("max_tokens", f"must be at most {MAX_TOKENS_LIMIT}")
    if not params.messages:
        raise _bad("messages", "at least one message is required")
    breakpoints = [0]
    for i, message in enumerate(params.messages):
        if message.role not in (m.ROLE_USER, m.ROLE_ASSISTANT):
            raise _bad(f"messages.{i}.role", "must be 'user' or 'assistant'")
        if not message.content:
            raise _bad(f"messages.{i}.content", "must not be empty")
        _check_blocks(list(message.content), f"messages.{i}.content", breakpoints)
    for j, block in enumerate(params.system):
        if block.WhichOneof("block") != "text":
            raise _bad(f"system.{j}", "system blocks must be text")
    _check_blocks(list(params.system), "system", breakpoints)
    if params.HasField("temperature") and not 0.0 <= params.temperature <= 1.0:
        raise _bad("temperature", "must be between 0 and 1")
    if params.HasField("top_p") and not 0.0 <= params.top_p <= 1.0:
        raise _bad("top_p", "must be between 0 and 1")
    if params.HasField("top_k") and params.top_k < 0:
        raise _bad("top_k", "must be non-negative")
    if len(params.stop_sequences) > MAX_STOP_SEQUENCES:
        raise _bad("stop_sequences", f"at most {MAX_STOP_SEQUENCES} stop sequences")
    for i, seq in enumerate(params.stop_sequences):
        if not seq.strip():
            raise _bad(f"stop_sequences.{i}", "must contain non-whitespace")
    names = set()
    for i, tool in enumerate(params.tools):
        if not _TOOL_NAME.match(tool.name):
            raise _bad(f"tools.{i}.name", "must match ^[a-zA-Z0-9_-]{1,128}$")
        if tool.name in names:
            raise _bad(f"tools.{i}.name", f"duplicate tool name {tool.name!r}")
        names.add(tool.name)
        if tool.HasField("cache_control"):
            breakpoints[0] += 1
    if params.tool_choice.mode == m.ToolChoice.MODE_TOOL and params.tool_choice.name not in names:
        raise _bad("tool_choice.name", "must name one of the tools")
    if breakpoints[0] > MAX_CACHE_BREAKPOINTS:
        raise _bad("cache_control", f"at most {MAX_CACHE_BREAKPOINTS} blocks can have cache_control")
