"""The Messages API's request rules, as the simulator enforces them.

The simulator refuses what the API refuses, with the API's status, error
type and (where known) wording; everything not listed here is accepted (a
lenient future API: unknown top-level fields, block types and tool types
pass). Sources are the researched facts (/tmp/facts/api-facts.md in the
task brief) and the URLs below; wordings marked CHOSEN were not confirmed
from any source and are the simulator's own.

Version (header ``anthropic-version``):
- missing: ``anthropic-version: header is required``; unknown value:
  ``anthropic-version: "<value>" is not a valid version``
  (https://github.com/envoyproxy/ai-gateway/pull/1909,
  https://github.com/decolua/9router/issues/2357).
- 2026-10-21 (https://platform.claude.com/docs/en/api/migration-2026-10-21,
  https://platform.claude.com/docs/en/api/versioning): ``temperature``,
  ``top_p``, ``top_k`` removed, 400 even at their defaults, ``<name>: Extra
  inputs are not permitted`` (third-party:
  https://github.com/samarthputhraya/Modelpin/releases/tag/v0.5.5); a
  ``document`` block directly in an assistant message is a 400 (CHOSEN:
  ``messages.{i}.content.{j}: document blocks are not allowed in assistant
  messages``); a user ``text`` block with non-empty ``citations``, directly
  or in a ``search_result`` block, is a 400 (CHOSEN: ``<path>.citations:
  citations are not allowed on text blocks in user messages``).
- 2023-06-01 on models refusing non-default sampling: ```temperature` is
  deprecated for this model.`` (https://github.com/RooCodeInc/Roo-Code/issues/12162;
  top_p / top_k by https://github.com/braintrustdata/lingua/pull/335).

Model (the catalog's facts):
- unknown or retired: 404 not_found_error ``model: <name>``
  (https://github.com/anthropics/claude-code/issues/5349,
  https://github.com/vicharanashala/vibe/issues/1259);
- ``max_tokens: {n} > {max}, which is the maximum allowed number of output
  tokens for {model}`` (https://github.com/anthropics/claude-code/issues/24451);
- ``prompt is too long: {N} tokens > {M} maximum``
  (https://github.com/earendil-works/pi/issues/102);
- ``"thinking.type.enabled" is not supported for this model. Use
  "thinking.type.adaptive" and "output_config.effort" to control thinking
  behavior.`` (https://www.stepcodex.com/en/issue/docs-agent-sdk-quickstart-shows-pre;
  other types: the same sentence, CHOSEN);
- ``inference_geo`` on a model without it is a 400
  (https://platform.claude.com/docs/en/build-with-claude/data-residency;
  CHOSEN: ``inference_geo: 'us' is not supported for this model``);
- prefill on models without it: ``This model does not support assistant
  message prefill. The conversation must end with a user message.``
  (https://github.com/cortexkit/magic-context/issues/511); empty turns:
  ``messages.{i}: all messages must have non-empty content except for the
  optional final assistant message`` (https://github.com/anthropics/claude-code/issues/6774);
- thinking signatures: ``messages.{i}.content.{j}: Invalid `signature` in
  `thinking` block`` (https://github.com/anthropics/claude-code/issues/10627).

Field types follow pydantic's wording (``<path>: Field required``, ``<path>:
Input should be a valid integer``), as the API's own errors do.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sluice.catalog.catalog import Catalog, ModelEntry
from sluice.simulator.signing import Signer
from sluice.wire import jsontext

VERSION_2023 = "2023-06-01"
VERSION_2026 = "2026-10-21"
VERSIONS = (VERSION_2023, VERSION_2026)
# Deepest JSON nesting accepted (pydantic-core's JSON parser, which the API's
# wording suggests it uses, stops at 200 levels).
MAX_DEPTH = 200
SAMPLING = ("temperature", "top_p", "top_k")

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 409: "conflict_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error",
}
STATUS_OF_TYPE = {v: k for k, v in ERROR_TYPES.items()}


class ApiError(Exception):
    """An answer in the API's error shape: status, error type, message."""

    def __init__(self, status: int, message: str, error_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or ERROR_TYPES.get(status, "api_error")
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def _where(path: tuple[Any, ...]) -> str:
    return jsontext.dotted(path)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


# -- headers ---------------------------------------------------------------------------


def check_auth(x_api_key: str | None, authorization: str | None) -> None:
    """Either header carries the key: ``x-api-key: <key>`` or
    ``Authorization: Bearer <key>`` (the 2.x/1.x SDKs send the latter)."""
    if x_api_key:
        return
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return
        raise ApiError(401, "invalid x-api-key")
    raise ApiError(401, "x-api-key header is required")


def check_version(value: str | None) -> str:
    if value is None:
        raise invalid("anthropic-version: header is required")
    if value not in VERSIONS:
        raise invalid(f"anthropic-version: {jsontext.dumps(value)} is not a valid version")
    return value


# -- body ------------------------------------------------------------------------------


def parse_body(raw: bytes) -> Any:
    """The body's JSON value; ApiError for text that is not strict JSON
    (not UTF-8, NaN, lone surrogates, integers over 4300 digits) or nested
    deeper than MAX_DEPTH."""
    try:
        value = jsontext.loads(jsontext.decode_utf8(raw))
    except jsontext.JsonTextError as exc:
        where = _where(exc.path)
        raise invalid(f"{where}: {exc.message}" if where else exc.message) from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise invalid(f"request body: JSON nested more than {MAX_DEPTH} levels deep")
            stack.extend((inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return value


def _expect(value: Any, kinds: tuple[type, ...], path: tuple[Any, ...], what: str) -> Any:
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise invalid(f"{_where(path)}: Input should be a valid {what}")
    return value


def _integer(value: Any, path: tuple[Any, ...]) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return _expect(value, (int,), path, "integer")


# cache_control marks one request may carry, nested ones and the top-level one included.
MAX_CACHE_BREAKPOINTS = 4


def _count_marks(value: Any) -> int:
    """cache_control marks anywhere in a (checked, depth-bounded) body."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += isinstance(item.get("cache_control"), dict)
            stack.extend(v for k, v in item.items() if k != "cache_control")
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _check_cache_control(obj: dict[str, Any], path: tuple[Any, ...]) -> None:
    cc = obj.get("cache_control")
    if cc is None:
        return
    _expect(cc, (dict,), (*path, "cache_control"), "dictionary")
    if cc.get("type") != "ephemeral":
        raise invalid(f"{_where((*path, 'cache_control', 'type'))}: Input should be 'ephemeral'")
    if cc.get("ttl") is not None:
        _expect(cc["ttl"], (str,), (*path, "cache_control", "ttl"), "string")
        if cc["ttl"] not in ("5m", "1h"):
            raise invalid(f"{_where((*path, 'cache_control', 'ttl'))}: Input should be '5m' or '1h'")


def _check_blocks(content: Any, path: tuple[Any, ...], what: str = "list") -> None:
    """Content is a string or a list of typed blocks; the blocks the
    simulator reads (text, tool_result, search_result) are checked inside.
    Iterative: nesting is bounded by MAX_DEPTH anyway."""
    stack: list[tuple[Any, tuple[Any, ...], bool]] = [(content, path, True)]
    while stack:
        item, where, string_ok = stack.pop()
        if isinstance(item, str) and string_ok:
            continue
        for j, block in enumerate(_expect(item, (list,), where, what)):
            at = (*where, j)
            _expect(block, (dict,), at, "dictionary")
            if "type" not in block:
                raise invalid(f"{_where((*at, 'type'))}: Field required")
            kind = _expect(block["type"], (str,), (*at, "type"), "string")
            if kind == "text":
                _expect(block.get("text"), (str,), (*at, "text"), "string")
            elif kind == "tool_result" and block.get("content") is not None:
                stack.append((block["content"], (*at, "content"), True))
            elif kind == "search_result" and block.get("content") is not None:
                stack.append((block["content"], (*at, "content"), False))
            _check_cache_control(block, at)


def _blocks(content: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(j, b) for j, b in enumerate(content)] if isinstance(content, list) else []


def _user_citations(content: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """Paths of text blocks with non-empty citations: directly in `content`,
    or in the content of a search_result block (also one inside a tool result)."""
    for j, block in _blocks(content):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("citations"), list) and block["citations"]:
            yield (*path, j)
        elif kind == "search_result":
            for k, inner in _blocks(block.get("content")):
                if inner.get("type") == "text" and isinstance(inner.get("citations"), list) and inner["citations"]:
                    yield (*path, j, "content", k)
        elif kind == "tool_result":
            for k, inner in _blocks(block.get("content")):
                if inner.get("type") == "search_result":
                    for m, text in _blocks(inner.get("content")):
                        if text.get("type") == "text" and isinstance(text.get("citations"), list) \
                                and text["citations"]:
                            yield (*path, j, "content", k, "content", m)


def _is_empty(content: Any) -> bool:
    return content in ("", [])


def check_request(doc: Any, *, version: str, catalog: Catalog, now: datetime, signer: Signer,
                  count_tokens: bool = False) -> ModelEntry:
    """Checks a request body for /v1/messages (or count_tokens); the model
    it names. Raises ApiError for the first rule it breaks. The context
    window is `check_prompt_length`'s (it needs the token count)."""
    if not isinstance(doc, dict):
        raise invalid(f"request body: Input should be a valid dictionary, got {_type_name(doc)}")

    # Shapes of the fields the simulator reads (pydantic's checks come first).
    if doc.get("model") is None:
        raise invalid("model: Field required")
    model = _expect(doc["model"], (str,), ("model",), "string")
    max_tokens = 0
    if not count_tokens:
        if doc.get("max_tokens") is None:
            raise invalid("max_tokens: Field required")
        max_tokens = _integer(doc["max_tokens"], ("max_tokens",))
        if max_tokens < 0:
            raise invalid("max_tokens: Input should be greater than or equal to 0")
    if "messages" not in doc:
        raise invalid("messages: Field required")
    messages = _expect(doc["messages"], (list,), ("messages",), "list")
    if not messages:
        raise invalid("messages: List should have at least 1 item after validation, not 0")
    for i, message in enumerate(messages):
        _expect(message, (dict,), ("messages", i), "dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise invalid(f"messages.{i}.content: Field required")
        _check_blocks(message["content"], ("messages", i, "content"))
    if doc.get("system") is not None:
        _check_blocks(doc["system"], ("system",))
    if doc.get("tools") is not None:
        for j, tool in enumerate(_expect(doc["tools"], (list,), ("tools",), "list")):
            _expect(tool, (dict,), ("tools", j), "dictionary")
            _check_cache_control(tool, ("tools", j))
    _check_cache_control(doc, ())
    marks = _count_marks(doc)
    if marks > MAX_CACHE_BREAKPOINTS:
        raise invalid(f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
                      f"Found {marks}.")
    if doc.get("stream") is not None and not count_tokens:
        _expect(doc["stream"], (bool,), ("stream",), "boolean")
    if doc.get("stop_sequences") is not None and not count_tokens:
        for j, seq in enumerate(_expect(doc["stop_sequences"], (list,), ("stop_sequences",), "list")):
            _expect(seq, (str,), ("stop_sequences", j), "string")
    thinking_type = None
    if doc.get("thinking") is not None:
        thinking = _expect(doc["thinking"], (dict,), ("thinking",), "dictionary")
        if thinking.get("type") is None:
            raise invalid("thinking.type: Field required")
        thinking_type = _expect(thinking["type"], (str,), ("thinking", "type"), "string")
    geo = None
    if doc.get("inference_geo") is not None and not count_tokens:
        geo = _expect(doc["inference_geo"], (str,), ("inference_geo",), "string")

    # Version rules.
    if version == VERSION_2026:
        for name in doc:
            if name in SAMPLING:
                raise invalid(f"{name}: Extra inputs are not permitted")
        for i, message in enumerate(messages):
            if message["role"] == "assistant":
                for j, block in _blocks(message["content"]):
                    if block.get("type") == "document":
                        raise invalid(f"messages.{i}.content.{j}: document blocks are not allowed in "
                                      "assistant messages")
            else:
                for path in _user_citations(message["content"], ("messages", i, "content")):
                    raise invalid(f"{_where(path)}.citations: citations are not allowed on text blocks "
                                  "in user messages")
    else:
        for name in ("temperature", "top_p"):
            if doc.get(name) is not None:
                _expect(doc[name], (int, float), (name,), "number")
        if doc.get("top_k") is not None:
            _integer(doc["top_k"], ("top_k",))

    # Model rules.
    entry = catalog.lookup(model)
    if entry is None or entry.lifecycle(now) == "retired":
        raise ApiError(404, f"model: {model}")
    accepts = entry.accepts
    if version == VERSION_2023 and accepts.sampling == "default_temperature":
        if doc.get("temperature") is not None and doc["temperature"] != 1:
            raise invalid("`temperature` is deprecated for this model.")
        for name in ("top_p", "top_k"):
            if doc.get(name) is not None:
                raise invalid(f"`{name}` is deprecated for this model.")
    if not count_tokens and max_tokens > entry.max_output_tokens:
        raise invalid(f"max_tokens: {max_tokens} > {entry.max_output_tokens}, which is the maximum allowed "
                      f"number of output tokens for {model}")
    if thinking_type is not None and thinking_type not in accepts.thinking:
        if "adaptive" in accepts.thinking:
            advice = 'Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
        else:
            advice = 'Use "thinking.type.enabled" and "thinking.budget_tokens" to control thinking behavior.'
        raise invalid(f'"thinking.type.{thinking_type}" is not supported for this model. {advice}')
    if geo is not None and geo not in accepts.inference_geo:
        raise invalid(f"inference_geo: {geo!r} is not supported for this model")
    last = len(messages) - 1
    if messages[last]["role"] == "assistant" and not accepts.prefill:
        raise invalid("This model does not support assistant message prefill. The conversation must end "
                      "with a user message.")
    for i, message in enumerate(messages):
        if _is_empty(message["content"]) and not (i == last and message["role"] == "assistant"):
            raise invalid(f"messages.{i}: all messages must have non-empty content except for the optional "
                          "final assistant message")
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        for j, block in _blocks(message["content"]):
            if block.get("type") == "thinking" and not signer.verify(block.get("thinking"),
                                                                    block.get("signature")):
                raise invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    return entry


def check_prompt_length(tokens: int, entry: ModelEntry) -> None:
    if tokens > entry.context_window:
        raise invalid(f"prompt is too long: {tokens} tokens > {entry.context_window} maximum")
