"""A Messages API request: the client's exact JSON and typed views of it.

`MessagesRequest` keeps the body as the client wrote it and parses it once
to read what Sluice's stages use: the model, max_tokens, stream, the texts
the model will read (safety, audit, the token estimate), and cache
breakpoints (billing). It checks the type of each field Sluice reads and
nothing else: every other field, block type and value passes through to the
upstream, which answers for it as the API does. What Sluice changes is
declared, never re-encoded: `with_edits` splices replacement strings in at
JSON Pointer paths (the safety stage's redactions), and `template` drops the
members each upstream sets for itself (`model`, `stream`).

Field paths in errors follow the API's style (``messages.0.content.1.text``)
so a client sees the same wording from Sluice as from the API.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sluice.rpc.errors import SluiceError
from sluice.wire import jsontext
from sluice.wire.jsontext import JsonTextError, Path

# API versions (the anthropic-version header) Sluice knows. 2026-10-21 is
# what the 2.x Python and 1.x TypeScript SDKs send by default.
VERSION_2023 = "2023-06-01"
VERSION_2026 = "2026-10-21"
KNOWN_VERSIONS = (VERSION_2023, VERSION_2026)
LATEST_VERSION = VERSION_2026
# What an anthropic-version or anthropic-beta value may look like at all
# (dates and names); anything else is refused here rather than sent on as a
# header (control characters, kilobytes of junk).
_HEADER_VALUE = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_BETAS = 64
# The largest max_tokens a request can carry at all; the model's own limit
# (routing) is far below it and gives the API's wording.
MAX_TOKENS_CEILING = 2**31 - 1

# Block types whose text the model reads and Sluice checks (safety), counts
# (estimate) and records (audit). Other types pass through unread.
_IMAGE_TOKENS = 1600  # ~ (width*height)/750 for a mid-size image; not decoded here
_DOCUMENT_TOKENS = 3000  # a PDF page or two; not decoded here
_CHARS_PER_TOKEN = 4
_PER_MESSAGE_TOKENS = 4
# cache_control marks one request may carry (the prompt caching guide).
MAX_CACHE_BREAKPOINTS = 4


def tokens_for_chars(chars: int) -> int:
    """Estimated tokens for `chars` characters of prose or code: about four
    characters a token (Claude's tokenizer is not public; the estimate only
    sizes reservations and is settled against the provider's count)."""
    return (chars + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def _bad(path: Path, description: str) -> SluiceError:
    return SluiceError.bad_request(jsontext.dotted(path) or "(body)", description)


def _expect(value: Any, kind: type | tuple[type, ...], path: Path, what: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int to Python, not to JSON: true is no valid integer.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _bad(path, f"Input should be a valid {what}, got {jsontext.kind_name(value)}")
    return value


def check_headers(version: str | None, betas: tuple[str, ...]) -> None:
    """The API's checks of anthropic-version (required; a date-like token)
    and anthropic-beta (tokens): SluiceError(INVALID_REQUEST) in the API's
    words naming the header. Whether a version or beta exists is the
    upstream's to say."""
    if version is None:
        raise SluiceError.bad_request("anthropic-version", "header is required")
    if not _HEADER_VALUE.fullmatch(version):
        raise SluiceError.bad_request("anthropic-version", f"{jsontext.dumps(version[:64])} is not a valid version")
    if len(betas) > MAX_BETAS:
        raise SluiceError.bad_request("anthropic-beta", f"at most {MAX_BETAS} beta features")
    for beta in betas:
        if not _HEADER_VALUE.fullmatch(beta):
            raise SluiceError.bad_request("anthropic-beta", f"{jsontext.dumps(beta[:64])} is not a valid beta")


def check_version_for_sluice(version: str | None) -> None:
    """For what Sluice answers itself (the Models API): the version must be
    one it knows, as the API requires of its own."""
    check_headers(version, ())
    if version not in KNOWN_VERSIONS:
        raise SluiceError.bad_request("anthropic-version", f"{jsontext.dumps(version)} is not a valid version")


def parse_json_body(raw: bytes, exact: bool = True) -> tuple[str, list[jsontext.Member], dict[str, Any]]:
    """(text, top-level members, parsed object) of a request body; a
    SluiceError(INVALID_REQUEST) naming the field for anything malformed.
    Not `exact`: the object only (no text or members; numbers may be read
    as doubles), for a stage that only reads a body already checked."""
    if not exact:
        try:
            doc = jsontext.read(raw)
        except (ValueError, RecursionError):
            pass  # the exact path names the problem
        else:
            if isinstance(doc, dict):
                return "", [], doc
    try:
        text = jsontext.decode_utf8(raw)
        members, doc = jsontext.object_document(text)
    except JsonTextError as exc:
        raise _bad(exc.path, exc.message) from None
    return text, members, doc


@dataclass(frozen=True, slots=True)
class Text:
    """One text the model reads: where it is and what it says. `role` is the
    turn's role ("system" for the system prompt, "tools" for tool
    descriptions)."""

    path: Path
    text: str
    role: str
    # What the JSON holds at `path`: "string", or "number" for a number the
    # safety check reads as its digits (a card sent as a JSON number).
    kind: str = "string"


class MessagesRequest:
    """One request to /v1/messages (or /v1/messages/count_tokens when
    `count_tokens`), as sent: `raw` bytes, `anthropic_version`, `anthropic_beta`.
    Not `exact`: for reading only (faster; `with_edits` and `template` need
    the exact form).

    Raises SluiceError(INVALID_REQUEST) with a BadRequest field violation
    for a body that is not a JSON object or a field Sluice reads that has
    the wrong type.
    """

    __slots__ = ("raw", "text", "members", "doc", "anthropic_version", "anthropic_beta", "count_tokens",
                 "model", "max_tokens", "stream", "_texts", "_estimate", "_marks")

    def __init__(self, raw: bytes, anthropic_version: str = "", anthropic_beta: tuple[str, ...] = (),
                 count_tokens: bool = False, exact: bool = True) -> None:
        self.raw = raw
        self.anthropic_version = anthropic_version
        self.anthropic_beta = tuple(anthropic_beta)
        self.count_tokens = count_tokens
        self.text, self.members, self.doc = parse_json_body(raw, exact)
        self._texts: list[Text] | None = None
        self._estimate: int | None = None
        self._validate()

    @classmethod
    def unparsed(cls, raw: bytes, anthropic_version: str = "", anthropic_beta: tuple[str, ...] = (),
                 count_tokens: bool = False) -> MessagesRequest:
        """A stand-in for a body that did not parse, so a refused request can
        still be recorded (its bytes hashed for audit); its views are empty."""
        self = cls.__new__(cls)
        self.raw, self.text, self.members, self.doc = raw, "", [], {"messages": []}
        self.anthropic_version, self.anthropic_beta = anthropic_version, tuple(anthropic_beta)
        self.count_tokens, self.model, self.max_tokens, self.stream = count_tokens, "", 0, False
        self._texts, self._estimate = [], None
        return self

    # -- checks --------------------------------------------------------------------

    def _validate(self) -> None:
        doc = self.doc
        self._marks = 0
        self.model = _expect(doc["model"], str, ("model",), "string") if "model" in doc else ""
        if self.count_tokens:
            self.max_tokens = 0
        else:
            if "max_tokens" not in doc:
                raise _bad(("max_tokens",), "Field required")
            value = doc["max_tokens"]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            self.max_tokens = _expect(value, int, ("max_tokens",), "integer")
            if self.max_tokens < 0:
                raise _bad(("max_tokens",), "Input should be greater than or equal to 0")
            if self.max_tokens > MAX_TOKENS_CEILING:
                raise _bad(("max_tokens",), f"Input should be less than or equal to {MAX_TOKENS_CEILING}")
        self._check_metadata(doc)
        stream = doc.get("stream", False)
        self.stream = bool(_expect(stream, bool, ("stream",), "boolean")) if stream is not None else False
        if "messages" not in doc:
            raise _bad(("messages",), "Field required")
        for i, message in enumerate(_expect(doc["messages"], list, ("messages",), "list")):
            path = ("messages", i)
            _expect(message, dict, path, "dictionary")
            if "role" not in message:
                raise _bad((*path, "role"), "Field required")
            _expect(message["role"], str, (*path, "role"), "string")
            if "content" not in message:
                raise _bad((*path, "content"), "Field required")
            self._check_content(message["content"], (*path, "content"))
        if doc.get("system") is not None:
            self._check_content(doc["system"], ("system",))
        if doc.get("tools") is not None:
            for j, tool in enumerate(_expect(doc["tools"], list, ("tools",), "list")):
                _expect(tool, dict, ("tools", j), "dictionary")
                if tool.get("description") is not None:
                    _expect(tool["description"], str, ("tools", j, "description"), "string")
                self._check_cache_control(tool, ("tools", j))
        self._check_cache_control(doc, ())

    @staticmethod
    def _check_metadata(doc: dict[str, Any]) -> None:
        """metadata (only user_id, a string of at most 256 characters) and
        service_tier ("auto" or "standard_only"), as the API takes them:
        the response cache leaves both out of its key, so what the API
        would refuse must not get a stored answer."""
        metadata = doc.get("metadata")
        if metadata is not None:
            for name in _expect(metadata, dict, ("metadata",), "dictionary"):
                if name != "user_id":
                    raise _bad(("metadata", name), "Extra inputs are not permitted")
            user = metadata.get("user_id")
            if user is not None and len(_expect(user, str, ("metadata", "user_id"), "string")) > 256:
                raise _bad(("metadata", "user_id"), "String should have at most 256 characters")
        tier = doc.get("service_tier")
        if tier is not None and tier not in ("auto", "standard_only"):
            raise _bad(("service_tier",), "Input should be 'auto' or 'standard_only'")

    def _check_content(self, content: Any, path: Path) -> None:
        if isinstance(content, str):
            return
        for j, block in enumerate(_expect(content, list, path, "list or string")):
            where = (*path, j)
            _expect(block, dict, where, "dictionary")
            if "type" not in block:
                raise _bad((*where, "type"), "Field required")
            kind = _expect(block["type"], str, (*where, "type"), "string")
            if kind == "text":
                _expect(block.get("text"), str, (*where, "text"), "string")
            elif kind in ("tool_result", "search_result") and block.get("content") is not None:
                self._check_content(block["content"], (*where, "content"))
            elif kind in ("tool_use", "server_tool_use") and "input" in block:
                _expect(block["input"], dict, (*where, "input"), "dictionary")
            elif kind == "document":
                self._check_document(block, where)
            self._check_cache_control(block, where)

    def _check_document(self, block: dict[str, Any], path: Path) -> None:
        source = block.get("source")
        if isinstance(source, dict):
            if source.get("type") == "text":
                _expect(source.get("data"), str, (*path, "source", "data"), "string")
            elif source.get("type") == "content" and source.get("content") is not None:
                self._check_content(source["content"], (*path, "source", "content"))

    def _check_cache_control(self, obj: dict[str, Any], path: Path) -> None:
        """A cache_control mark as the API takes it: {"type": "ephemeral"}
        with an optional ttl of "5m" or "1h"; at most MAX_CACHE_BREAKPOINTS
        marks in a request (the top-level one included), the API's limit."""
        cc = obj.get("cache_control")
        if cc is None:
            return
        _expect(cc, dict, (*path, "cache_control"), "dictionary")
        if cc.get("type") != "ephemeral":
            raise _bad((*path, "cache_control", "type"), "Input should be 'ephemeral'")
        if cc.get("ttl") is not None:
            _expect(cc["ttl"], str, (*path, "cache_control", "ttl"), "string")
            if cc["ttl"] not in ("5m", "1h"):
                raise _bad((*path, "cache_control", "ttl"), "Input should be '5m' or '1h'")
        self._marks += 1
        if self._marks > MAX_CACHE_BREAKPOINTS:
            raise _bad((*path, "cache_control"), f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with "
                       "cache_control may be provided.")

    # -- views ---------------------------------------------------------------------

    def texts(self) -> list[Text]:
        """Every text the model reads, in prompt order (tools, system, turns):
        text blocks, string contents, tool results, the string arguments of
        earlier tool calls (at any depth), plain-text documents, and tool
        descriptions. Thinking blocks are not among them: they go back to the
        API byte-exact (their signature covers them)."""
        if self._texts is None:
            out: list[Text] = []
            doc = self.doc
            for j, tool in enumerate(doc.get("tools") or ()):
                if isinstance(tool.get("description"), str):
                    out.append(Text(("tools", j, "description"), tool["description"], "tools"))
            if doc.get("system") is not None:
                _content_texts(doc["system"], ("system",), "system", out)
            for i, message in enumerate(doc["messages"]):
                _content_texts(message["content"], ("messages", i, "content"), message["role"], out)
            self._texts = out
        return self._texts

    def readable(self) -> list[Text]:
        """What the safety check reads: `texts()`, and also the string
        values of each tool's `input_schema` (descriptions, enums, titles
        at any depth) and the numbers in earlier tool calls' inputs, in
        prompt order. A number's text is the number written as JSON again
        (`4111111111111111e0` reads as 4.111111111111111e+15); redacting
        one puts a string placeholder in its place."""
        out: list[Text] = []
        doc = self.doc
        schema_texts: dict[int, list[Text]] = {}
        for j, tool in enumerate(doc.get("tools") or ()):
            if isinstance(tool.get("input_schema"), dict):
                schema_texts[j] = json_leaves(tool["input_schema"], ("tools", j, "input_schema"), "tools",
                                              numbers=False)
        for text in self.texts():
            out.append(text)
            if text.path[0] == "tools" and text.path[1] in schema_texts:
                out += schema_texts.pop(text.path[1])
        # Schemas of tools without a description come first, in tool order.
        out = [text for found in schema_texts.values() for text in found] + out
        numbers: list[Text] = []
        for path, block in _blocks_with_paths(doc):
            if block.get("type") in ("tool_use", "server_tool_use") and isinstance(block.get("input"), dict):
                numbers += [t for t in json_leaves(block["input"], (*path, "input"), "assistant") if t.kind == "number"]
        return out + numbers

    def estimated_input_tokens(self) -> int:
        """Input tokens estimated from the texts, images, documents and tool
        schemas, at least 1 (computed once). Sizes quota reservations;
        settled later against the provider's own count."""
        if self._estimate is None:
            self._estimate = self._estimated()
        return self._estimate

    def _estimated(self) -> int:
        chars = sum(len(t.text) for t in self.texts())
        extra = _PER_MESSAGE_TOKENS * len(self.doc["messages"])
        for tool in self.doc.get("tools") or ():
            chars += len(str(tool.get("name", ""))) + len(jsontext.dumps(tool.get("input_schema") or {}))
        for block in _blocks(self.doc):
            kind = block.get("type")
            if kind == "image":
                extra += _IMAGE_TOKENS
            elif kind == "document" and not (isinstance(block.get("source"), dict)
                                             and block["source"].get("type") in ("text", "content")):
                extra += _DOCUMENT_TOKENS
        return max(tokens_for_chars(chars) + extra, 1)

    def cache_breakpoints(self) -> list[tuple[int, str]]:
        """(estimated tokens of the prefix up to and including the block, ttl)
        for each cache_control breakpoint, in prefix order (tools, system,
        messages); ttl is "5m" or "1h". A top-level cache_control (automatic
        caching) counts as a breakpoint at the end of the prompt."""
        out: list[tuple[int, str]] = []
        chars = 0
        doc = self.doc

        def note(obj: Any, size: int) -> None:
            nonlocal chars
            chars += size
            if isinstance(obj, dict) and isinstance(obj.get("cache_control"), dict):
                out.append((tokens_for_chars(chars), _ttl(obj["cache_control"])))

        for tool in doc.get("tools") or ():
            note(tool, len(jsontext.dumps(tool)))
        system = doc.get("system")
        for block in ([] if system is None else [system] if isinstance(system, str) else system):
            note(block, len(block_text(block)))
        for message in doc["messages"]:
            content = message["content"]
            for block in [content] if isinstance(content, str) else content:
                note(block, len(block_text(block)))
        if isinstance(doc.get("cache_control"), dict):
            out.append((tokens_for_chars(chars), _ttl(doc["cache_control"])))
        return out

    def prompt_text(self) -> str:
        """The prompt as a reviewer reads it: one ``role: text`` paragraph per
        turn (system first, tool descriptions not included)."""
        parts: list[str] = []
        current: tuple[Any, ...] | None = None
        for text in self.texts():
            if text.role == "tools":
                continue
            turn = text.path[:2] if text.path[0] == "messages" else text.path[:1]
            if turn != current:
                parts.append(f"{text.role}: {text.text}")
                current = turn
            else:
                parts[-1] += "\n" + text.text
        return "\n\n".join(parts)

    # -- edits ---------------------------------------------------------------------

    def with_edits(self, edits: list[tuple[Path, str]]) -> MessagesRequest:
        """A copy with the string at each path replaced (redaction); every
        other byte stays as the client sent it."""
        if not edits:
            return self
        text = jsontext.replace_values(self.text, edits)
        return MessagesRequest(text.encode("utf-8"), self.anthropic_version, self.anthropic_beta,
                               self.count_tokens)

    def template(self, drop: frozenset[str] = frozenset({"model", "stream"})) -> bytes:
        """The body without the members each upstream sets itself (by
        default `model` and `stream`), all others exactly as written."""
        return jsontext.without_members(self.text, self.members, set(drop)).encode("utf-8")


def upstream_body(template: bytes, leading: list[tuple[str, Any]]) -> bytes:
    """The body an upstream receives: `template` (see MessagesRequest.template)
    with `leading` members (e.g. model and stream) put first."""
    return jsontext.with_leading_members(template.decode("utf-8"), leading).encode("utf-8")


def _ttl(cache_control: dict[str, Any]) -> str:
    return "1h" if cache_control.get("ttl") == "1h" else "5m"


def _blocks(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every content block of the system prompt and the turns, nested ones
    (tool results, content documents) included."""
    stack: list[Any] = []
    if isinstance(doc.get("system"), list):
        stack.extend(doc["system"])
    for message in doc["messages"]:
        if isinstance(message["content"], list):
            stack.extend(message["content"])
    while stack:
        block = stack.pop()
        if not isinstance(block, dict):
            continue
        yield block
        if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            stack.extend(block["content"])
        elif block.get("type") == "document" and isinstance(block.get("source"), dict) \
                and isinstance(block["source"].get("content"), list):
            stack.extend(block["source"]["content"])


def block_text(block: Any) -> str:
    """The text a content block carries (its own and nested blocks'), for
    token estimates; a string is its own text."""
    if isinstance(block, str):
        return block
    out: list[Text] = []
    _block_texts(block, (), "", out)
    return "".join(t.text for t in out)


# Members of a server tool's result that are not prose.
_NOT_READ = frozenset({"type", "url", "encrypted_content", "encrypted_index", "encrypted_stdout", "tool_use_id",
                       "page_age", "file_id", "media_type", "retrieved_at", "error_code"})


def _content_texts(content: Any, path: Path, role: str, out: list[Text]) -> None:
    if isinstance(content, str):
        if content:
            out.append(Text(path, content, role))
        return
    for j, block in enumerate(content):
        _block_texts(block, (*path, j), role, out)


def _block_texts(block: dict[str, Any], path: Path, role: str, out: list[Text]) -> None:
    kind = block.get("type")
    if kind == "text":
        if block["text"]:
            out.append(Text((*path, "text"), block["text"], role))
        for j, citation in enumerate(block.get("citations") or ()):
            if isinstance(citation, dict) and isinstance(citation.get("cited_text"), str) and citation["cited_text"]:
                out.append(Text((*path, "citations", j, "cited_text"), citation["cited_text"], role))
    elif kind == "tool_result":
        if block.get("content") is not None:
            _content_texts(block["content"], (*path, "content"), role, out)
    elif kind in ("tool_use", "server_tool_use"):
        out += json_leaves(block.get("input") or {}, (*path, "input"), role, numbers=False)
    elif kind == "document":
        source = block.get("source")
        if isinstance(source, dict):
            if source.get("type") == "text" and source.get("data"):
                out.append(Text((*path, "source", "data"), source["data"], role))
            elif source.get("type") == "content" and source.get("content") is not None:
                _content_texts(source["content"], (*path, "source", "content"), role, out)
        for name in ("title", "context"):
            if isinstance(block.get(name), str) and block[name]:
                out.append(Text((*path, name), block[name], role))
    elif isinstance(kind, str) and kind.endswith("_tool_result") and block.get("content") is not None:
        # A server tool's result (web fetch, code execution, ...): every text in
        # it but identifiers, addresses and the encrypted parts the API reads back.
        for text in json_leaves(block["content"], (*path, "content"), role, numbers=False):
            if not (set(map(str, text.path[len(path) + 1:])) & _NOT_READ):
                out.append(text)
    elif kind == "search_result":
        for name in ("title",):
            if isinstance(block.get(name), str) and block[name]:
                out.append(Text((*path, name), block[name], role))
        if isinstance(block.get("content"), list):
            _content_texts(block["content"], (*path, "content"), role, out)


def json_leaves(value: Any, path: Path, role: str, numbers: bool = True) -> list[Text]:
    """Every non-empty string and (when `numbers`) every number (not a
    boolean) inside a JSON value, in document order; a number's text is its
    value written as JSON."""
    stack: list[tuple[Any, Path]] = [(value, path)]
    found: list[Text] = []
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if item:
                found.append(Text(where, item, role))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            if numbers:
                found.append(Text(where, jsontext.dumps(item), role, "number"))
        elif isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*where, i)) for i, v in reversed(list(enumerate(item))))
    return found


def _blocks_with_paths(doc: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(path, block) for each content block of the turns, in order."""
    for i, message in enumerate(doc["messages"]):
        content = message["content"]
        if isinstance(content, list):
            for j, block in enumerate(content):
                if isinstance(block, dict):
                    yield ("messages", i, "content", j), block

