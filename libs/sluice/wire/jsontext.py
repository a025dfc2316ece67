"""JSON that keeps its exact text: strict parsing, member spans and splices.

Sluice carries a client's JSON without re-encoding it. Re-encoding is where
JSON data changes: a number re-printed from a double loses digits
(9007199254740993) or its form (``17`` becomes ``17.0`` in a protobuf
Struct), and a string's escapes change. So the codec parses to *read*, and
edits by *splicing*: it finds the exact span of a value in the original text
and replaces only that span. Everything outside an edit is byte-for-byte
what the client sent.

Paths are JSON Pointers (RFC 6901) as token tuples, e.g. ``("messages", 0,
"content", 1, "text")``; `pointer()` renders one as ``/messages/0/content/1/text``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]  # at run time; typeshed omits it
from typing import Any

import orjson

# RFC 8259 whitespace.
_WS = re.compile(r"[ \t\n\r]*")
# A UTF-16 surrogate escape: the only way a JSON text can name a lone
# surrogate, which no UTF-8 encoder (nor protobuf string) can carry.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

Token = str | int
Path = tuple[Token, ...]


class JsonTextError(ValueError):
    """The text is not JSON Sluice accepts; `path` names where (JSON Pointer
    tokens, empty for the document), `message` says what is wrong."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _reject_constant(name: str) -> Any:
    raise JsonTextError((), f"{name} is not a JSON value")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]  # set.add returns None: the `or` keeps looking
    return obj


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_raw_decode = _DECODER.raw_decode
# For what clients send: a key written twice is refused. Parsers disagree on
# which one counts, so text Sluice never checked could reach a model.
_UNIQUE_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_object)
_raw_decode_unique = _UNIQUE_DECODER.raw_decode
# ensure_ascii=False: strings stay as readable (and as short) as they came.
_std_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ascii_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """Compact JSON text of `value`, non-ASCII kept as is (orjson's speed,
    the stdlib's result, and the stdlib where orjson refuses a value). A
    lone surrogate (which UTF-8 cannot carry) is written as a \\u escape,
    so the text always encodes."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:  # integers beyond 64 bits, lone surrogates, subclasses
        text = _std_dumps(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _ascii_dumps(value)
        return text


def read(data: bytes) -> Any:
    """Parses JSON bytes for reading (views), fast: orjson, or the stdlib
    where orjson refuses (lone surrogate escapes). An integer beyond 64 bits
    reads as a double here, so a view is never written back as JSON data:
    what Sluice passes on keeps its text (splices, raw spans). Raises
    ValueError for anything that is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dotted(path: Path) -> str:
    """The path as the API names fields in its errors: ``messages.0.content``."""
    return ".".join(map(str, path))


def pointer(path: Path) -> str:
    """The path as a JSON Pointer (RFC 6901): ``/messages/0/content``."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in path)


def parse_pointer(text: str) -> Path:
    """Inverse of `pointer`; array indices come back as ints. Raises
    JsonTextError for text that is not a pointer."""
    if not text:
        return ()
    if not text.startswith("/"):
        raise JsonTextError((), f"not a JSON Pointer: {text!r}")
    out: list[Token] = []
    for raw in text[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        # Array indices are ASCII digits without a leading zero (RFC 6901);
        # str.isdigit() alone also takes "²".
        index = token.isascii() and token.isdigit() and (token == "0" or not token.startswith("0"))
        out.append(int(token) if index else token)
    return tuple(out)


def decode_utf8(raw: bytes) -> str:
    """The body as text; JsonTextError when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonTextError((), f"body is not valid UTF-8 (byte {exc.start})") from None


def loads(text: str) -> Any:
    """Parses strict JSON (no NaN/Infinity, no lone surrogates, integers
    within CPython's 4300-digit limit, nesting within the interpreter's
    recursion limit). Raises JsonTextError naming the problem; a surrogate
    problem names its path."""
    try:
        value, end = _raw_decode(text, _WS.match(text, 0).end())  # type: ignore[union-attr]  # _WS matches '': never None
    except JsonTextError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonTextError((), f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonTextError((), "not valid JSON: nested too deeply") from None
    except ValueError as exc:  # the integer digit limit
        raise JsonTextError((), f"not valid JSON: {exc}") from None
    if _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]  # _WS matches '': never None
        raise JsonTextError((), "not valid JSON: extra data after the value")
    if _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(value, ())
        if bad is not None:
            raise JsonTextError(bad, "string contains a lone UTF-16 surrogate, which is not valid Unicode")
    return value


def _lone_surrogate(value: Any, path: Path) -> Path | None:
    """The path of the first string (or key) holding a lone surrogate."""
    stack: list[tuple[Any, Path]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return where
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not _encodable(key):
                    return (*where, key)
                stack.append((inner, (*where, key)))
        elif isinstance(item, list):
            stack.extend((inner, (*where, i)) for i, inner in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a JSON object as written: its key, parsed value, and
    where it sits (`start` at the key's opening quote, `value_start` at the
    value, `end` just past the value)."""

    key: str
    value: Any
    start: int
    value_start: int
    end: int


def object_members(text: str, at: int = 0, unique: bool = False) -> tuple[list[Member], int]:
    """The members of the JSON object starting at (or after whitespace from)
    `at`, in written order (duplicates kept), and the index just past it.
    `unique`: a key written twice in any object inside the values is refused
    (_DuplicateKey). Raises JsonTextError if there is no well-formed object
    there."""
    decode = _raw_decode_unique if unique else _raw_decode
    idx = _WS.match(text, at).end()  # type: ignore[union-attr]  # _WS matches '': never None
    if text[idx:idx + 1] != "{":
        raise JsonTextError((), "expected a JSON object")
    idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]  # _WS matches '': never None
    members: list[Member] = []
    if text[idx:idx + 1] == "}":
        return members, idx + 1
    while True:
        if text[idx:idx + 1] != '"':
            raise JsonTextError((), "expected a member name")
        start = idx
        try:
            key, idx = scanstring(text, idx + 1, True)
            idx = _WS.match(text, idx).end()  # type: ignore[union-attr]  # _WS matches '': never None
            if text[idx:idx + 1] != ":":
                raise JsonTextError((key,), "expected ':' after the member name")
            value_start = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]  # _WS matches '': never None
            value, idx = decode(text, value_start)
        except JsonTextError:
            raise
        except RecursionError:
            raise JsonTextError((key,), "not valid JSON: nested too deeply") from None
        except ValueError as exc:
            raise JsonTextError((), f"not valid JSON: {exc}") from None
        members.append(Member(key, value, start, value_start, idx))
        idx = _WS.match(text, idx).end()  # type: ignore[union-attr]  # _WS matches '': never None
        sep = text[idx:idx + 1]
        if sep == "}":
            return members, idx + 1
        if sep != ",":
            raise JsonTextError((), "expected ',' or '}' in an object")
        idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]  # _WS matches '': never None


def object_document(text: str) -> tuple[list[Member], dict[str, Any]]:
    """A JSON text that must be one object: its members as written and the
    parsed object (the last of duplicate keys wins, as in parsing), from a
    single pass. Raises JsonTextError as `loads` does, and when the text is
    not an object."""
    start = _WS.match(text, 0).end()  # type: ignore[union-attr]  # _WS matches '': never None
    if text[start:start + 1] != "{":
        value = loads(text)  # raises JsonTextError for text that is not JSON
        raise JsonTextError((), f"request body must be a JSON object, got {kind_name(value)}")
    try:
        members, end = object_members(text, start, unique=True)
    except _DuplicateKey as dup:
        raise JsonTextError(_duplicate_path(text, start),
                            f"duplicate key {dup.key!r}: a key may be written once") from None
    except JsonTextError as exc:
        if exc.message in ("expected a member name", "expected ',' or '}' in an object") or \
                exc.message.startswith("not valid JSON"):
            loads(text)  # name the problem as a whole-document parse would
        raise
    if _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]  # _WS matches '': never None
        raise JsonTextError((), "not valid JSON: extra data after the value")
    doc = {m.key: m.value for m in members}
    if len(doc) != len(members):
        raise JsonTextError(_duplicate_path(text, start), "duplicate key: a key may be written once")
    if _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(doc, ())
        if bad is not None:
            raise JsonTextError(bad, "string contains a lone UTF-16 surrogate, which is not valid Unicode")
    return members, doc


def _duplicate_path(text: str, start: int) -> Path:
    """The path of the first object (in document order) that writes a key
    twice, and that key; () when there is none."""
    stack: list[tuple[int, Path]] = [(start, ())]
    while stack:
        at, path = stack.pop(0)
        opener = text[at:at + 1]
        if opener == "{":
            members, _ = object_members(text, at)
            seen: set[str] = set()
            for m in members:
                if m.key in seen:
                    return (*path, m.key)
                seen.add(m.key)
            stack[:0] = [(m.value_start, (*path, m.key)) for m in members if text[m.value_start] in "[{"]
        elif opener == "[":
            stack[:0] = [(s, (*path, i)) for i, (s, _) in enumerate(_array_items(text, at)) if text[s] in "[{"]
    return ()


def kind_name(value: Any) -> str:
    """A parsed value's JSON type, as error messages name it ("object", "array", ...)."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _array_items(text: str, at: int) -> list[tuple[int, int]]:
    """(start, end) of each item of the JSON array starting at `at`."""
    idx = _WS.match(text, at + 1).end()  # type: ignore[union-attr]  # _WS matches '': never None
    spans: list[tuple[int, int]] = []
    if text[idx:idx + 1] == "]":
        return spans
    while True:
        _, end = _raw_decode(text, idx)
        spans.append((idx, end))
        idx = _WS.match(text, end).end()  # type: ignore[union-attr]  # _WS matches '': never None
        if text[idx:idx + 1] == "]":
            return spans
        idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]  # _WS matches '': never None


def value_span(text: str, path: Path, at: int = 0,
               parsed: dict[int, Any] | None = None) -> tuple[int, int]:
    """(start, end) of the value at `path` inside the JSON value starting at
    `at`. Where a key is written twice, the last one counts, as in parsing.
    `parsed` keeps the containers read on the way (by offset), so many paths
    into one document read each container once. Raises KeyError when the
    path leads nowhere."""
    parsed = {} if parsed is None else parsed
    start = _WS.match(text, at).end()  # type: ignore[union-attr]  # _WS matches '': never None
    end = -1
    for token in path:
        # A token means a key or an index by the container it meets (RFC
        # 6901): "/0" is the member "0" of an object, the first item of an array.
        opener = text[start:start + 1]
        if opener == "{":
            members = parsed.get(start)
            if members is None:
                members = parsed[start] = {}
                for m in object_members(text, start)[0]:
                    members[m.key] = m  # the last of a twice-written key
            found = members.get(str(token))
            if found is None:
                raise KeyError(token)
            start, end = found.value_start, found.end
        elif opener == "[" and isinstance(token, int):
            items = parsed.get(start)
            if items is None:
                items = parsed[start] = _array_items(text, start)
            if not 0 <= token < len(items):
                raise KeyError(token)
            start, end = items[token]
        else:
            raise KeyError(token)
    if end < 0:
        end = _raw_decode(text, start)[1]
    return start, end


def splice(text: str, edits: Iterable[tuple[int, int, str]]) -> str:
    """`text` with each (start, end) span replaced; spans must not overlap."""
    out: list[str] = []
    last = 0
    for start, end, replacement in sorted(edits):
        if start < last:
            raise ValueError("overlapping edits")
        out += (text[last:start], replacement)
        last = end
    out.append(text[last:])
    return "".join(out)


def replace_values(text: str, replacements: Iterable[tuple[Path, Any]]) -> str:
    """`text` with the value at each path replaced by `value` (encoded as
    JSON); everything else keeps its exact text. Raises KeyError for a path
    that leads nowhere."""
    parsed: dict[int, Any] = {}
    return splice(text, ((*value_span(text, path, 0, parsed), dumps(value)) for path, value in replacements))


def without_members(text: str, members: list[Member], drop: set[str]) -> str:
    """The object `members` came from, minus the members named in `drop`;
    the rest keep their exact text (key spelling included)."""
    return "{" + ",".join(text[m.start:m.end] for m in members if m.key not in drop) + "}"


def with_leading_members(obj_text: str, leading: Iterable[tuple[str, Any]]) -> str:
    """The JSON object `obj_text` with `leading` members (values encoded
    here) put first. The caller removed any same-named members before."""
    head = ",".join(f"{dumps(key)}:{dumps(value)}" for key, value in leading)
    body = obj_text.strip()
    inner = body[1:-1].strip()
    if not head:
        return body
    return "{" + head + ("," + inner if inner else "") + "}"
