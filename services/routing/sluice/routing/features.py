"""What the router reads of a request: one code path for serving, training,
replay and evaluation.

Training-serving skew (features computed one way offline and another way
online) is the failure mode the design review names first, so there is one
function, `extract`, from a parsed Messages request to `Features`, and the
offline tools build a Messages request from each corpus line
(`corpus_request`) before calling it, exactly as a client's body would be.

Features are of two kinds:
- prompt signals the policy reads directly: estimated input tokens, tools,
  images or documents, thinking requested, user turns so far;
- the classifier's tokens: words of the latest user turn and the system
  prompt (lower-cased; runs of CJK, kana and hangul as character bigrams,
  since those scripts do not separate words with spaces), word bigrams,
  cue concepts (`@translate`, `@legal`, ...: `data/cues.json` maps the words
  people use to ask for a kind of task, in ten languages, to one token, so
  what the model learns from an English prompt carries to a Korean one),
  and the signals bucketed as tokens (`#len:3`, `#tools`, ...), so the
  linear model sees them too.

The text read is bounded (the head and tail of the latest turn, the head of
the system prompt): classification costs the same for a 1K-token prompt as
for a 100K-token one.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.wire.request import MessagesRequest

# Characters of the latest user turn read (head, tail) and of the system prompt.
HEAD_CHARS = 1500
TAIL_CHARS = 500
SYSTEM_CHARS = 600

# Characters that separate words: ASCII punctuation, digits and whitespace
# (a bytes.translate table: one C pass) and common Unicode punctuation and
# symbols (one regex pass over non-ASCII text). Both together are ten times
# faster than a \w+ regex or str.translate over non-ASCII text.
_ASCII_SEPARATORS = bytes.maketrans(
    (string.punctuation + string.digits + string.whitespace).encode(),
    b" " * len(string.punctuation + string.digits + string.whitespace))
_UNICODE_SEPARATORS = re.compile(
    "[¡¿«»‹›“”‘’„‚–—―…·•°§¶×÷€£¥©®™\u00a0\u2000-\u206f\u3000-\u303f\uff01-\uff20\uff3b-\uff40\uff5b-\uff65]")
_DENSE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
# Substrings that say code is in the prompt (substring tests: a regex
# alternation over a long prompt costs half a millisecond).
_CODE_MARKERS = ("```", "def ", "function", "class ", ";\n", "{\n", "}\n", "=>", "import ", "#include", "return ")
# Token-count buckets (upper bounds): short, medium, long, very long, huge.
_LEN_BUCKETS = (30, 150, 600, 2_000, 8_000)
# Words of the head and the tail of the latest turn looked up in the cue
# lexicon: where people say what they want.
CUE_HEAD_WORDS = 80
CUE_TAIL_WORDS = 40
CUES_PATH = Path(__file__).parent / "data" / "cues.json"


def _load_cues(path: Path) -> tuple[dict[str, str], tuple[int, ...]]:
    """{stem: "@concept"} and the stem lengths, longest first (a word takes
    its longest matching stem). Raises OSError or ValueError for a file
    that cannot be read."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    stems: dict[str, str] = {}
    for concept, words in doc["cues"].items():
        for stem in words:
            stems[stem] = "@" + concept
    return stems, tuple(sorted({len(s) for s in stems}, reverse=True))


_STEMS, _STEM_LENGTHS = _load_cues(CUES_PATH)


@dataclass(frozen=True, slots=True)
class Features:
    """A request as the router sees it.

    prompt_tokens: estimated input tokens (the codec's estimate);
    tools: the request offers tools or carries tool calls or results;
    media: images or non-text documents; thinking: extended thinking asked
    for; turns: user turns so far; tokens: the classifier's input (see the
    module doc), deduplicated, in first-seen order.
    """

    prompt_tokens: int
    tools: bool
    media: bool
    thinking: bool
    turns: int
    tokens: tuple[str, ...]


def extract(request: MessagesRequest, prompt_tokens: int | None = None) -> Features:
    """Features of a parsed request (any request the codec accepted).
    `prompt_tokens`: the codec's estimate of its input when the caller has
    it already (walking a large prompt again is most of the cost)."""
    doc = request.doc
    messages = doc["messages"]
    turns = 0
    latest: Any = ""
    tool_traffic = False
    media = False
    for message in messages:
        if message.get("role") == "user":
            turns += 1
            latest = message.get("content")
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                kind = block.get("type")
                if kind in ("tool_use", "tool_result", "server_tool_use"):
                    tool_traffic = True
                elif kind == "image" or (kind == "document" and not _text_document(block)):
                    media = True
    tools = bool(doc.get("tools")) or tool_traffic
    thinking = isinstance(doc.get("thinking"), dict) and doc["thinking"].get("type") in ("enabled", "adaptive")
    text = _turn_text(latest)
    if len(text) > HEAD_CHARS + TAIL_CHARS:
        text = text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]
    if (len(text) > (HEAD_CHARS + TAIL_CHARS) // 4 and not text.isascii()
            and 3 * sum(map(len, _DENSE.findall(text))) > len(text)):
        # A text mostly in CJK or hangul (over a third of its characters)
        # carries about four times as much per character (a character is
        # about a model token, an English word four characters): about the
        # same reading, a quarter of the text.
        text = text[:HEAD_CHARS // 4] + "\n" + text[-TAIL_CHARS // 4:]
    system = _turn_text(doc.get("system"))[:SYSTEM_CHARS]
    if prompt_tokens is None:
        prompt_tokens = request.estimated_input_tokens()
    return Features(prompt_tokens, tools, media, thinking, max(turns, 1),
                    tokens(text, system, prompt_tokens, tools, media, thinking, turns))


def tokens(text: str, system: str, prompt_tokens: int, tools: bool, media: bool, thinking: bool,
           turns: int) -> tuple[str, ...]:
    """The classifier's tokens (module doc); `text` is the latest user turn."""
    words = _words(text)
    # Where people say what they want: word pairs and cues from the head and tail only.
    ends = words[:CUE_HEAD_WORDS] + words[-CUE_TAIL_WORDS:] if len(words) > CUE_HEAD_WORDS + CUE_TAIL_WORDS \
        else words
    seen = dict.fromkeys(words)
    seen.update(dict.fromkeys([a + " " + b for a, b in itertools.pairwise(ends)]))
    seen.update(dict.fromkeys(["s:" + word for word in _words(system)]))
    for word in ends:
        cue = _cue(word)
        if cue is not None:
            seen[cue] = None
    bucket = next((i for i, bound in enumerate(_LEN_BUCKETS) if prompt_tokens <= bound), len(_LEN_BUCKETS))
    seen[f"#len:{bucket}"] = None
    lines = text.count("\n")
    seen[f"#lines:{0 if lines == 0 else 1 if lines < 5 else 2 if lines < 30 else 3}"] = None
    for token, present in (("#code", any(marker in text for marker in _CODE_MARKERS)),
                           ("#digits", any(digit in text for digit in "0123456789")),
                           ("#question", "?" in text or "？" in text), ("#tools", tools), ("#media", media),
                           ("#thinking", thinking), ("#system", bool(system))):
        if present:
            seen[token] = None
    seen[f"#turns:{min(turns, 4)}"] = None
    return tuple(seen)


@functools.lru_cache(maxsize=1 << 16)
def _cue(word: str) -> str | None:
    """The concept of a word's longest matching stem (a CJK bigram matches whole)."""
    for length in _STEM_LENGTHS:
        if len(word) >= length:
            found = _STEMS.get(word[:length])
            if found is not None:
                return found
    return None


def _words(text: str) -> list[str]:
    """Lower-cased words: runs of letters (digits, punctuation and symbols
    separate them), at most 39 letters kept of one; runs of CJK, kana and
    hangul as overlapping character pairs."""
    lowered = text.lower()
    ascii_only = lowered.isascii()
    if not ascii_only:
        lowered = _UNICODE_SEPARATORS.sub(" ", lowered)
    words = lowered.encode().translate(_ASCII_SEPARATORS).decode().split()
    if ascii_only or _DENSE.search(lowered) is None:
        return [w[:39] for w in words] if words and max(map(len, words)) >= 40 else words
    out: list[str] = []
    for word in words:
        if word.isascii() or _DENSE.search(word) is None:
            out.append(word[:39])
            continue
        last = 0
        for match in _DENSE.finditer(word):
            if match.start() > last:
                out.append(word[last:match.start()])
            run = match.group()
            out += [a + b for a, b in itertools.pairwise(run)] if len(run) > 1 else [run]
            last = match.end()
        if last < len(word):
            out.append(word[last:])
    return out


def _text_document(block: dict[str, Any]) -> bool:
    source = block.get("source")
    return isinstance(source, dict) and source.get("type") in ("text", "content")


def _turn_text(content: Any) -> str:
    """A turn's (or system prompt's) text: a string content, or its text
    blocks and text tool results joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block.get("type") == "tool_result":
            parts.append(_turn_text(block.get("content")))
        elif block.get("type") == "document" and _text_document(block):
            data = block["source"].get("data")
            parts.append(data if isinstance(data, str) else _turn_text(block["source"].get("content")))
    return "\n".join(parts)


# -- the corpus and traces as requests -----------------------------------------------

_TOOL = {"name": "run", "description": "Runs an action in the user's workspace and returns its output.",
         "input_schema": {"type": "object", "properties": {"action": {"type": "string"}}}}


def corpus_request(entry: dict[str, Any], model: str = "auto", max_tokens: int = 1024) -> dict[str, Any]:
    """The Messages request body a corpus line stands for: the prompt as the
    latest user turn after `turns - 1` earlier exchanges, with its system
    prompt, a tool when `tools`, thinking when `thinking`. Raises KeyError
    or TypeError for a line without a string `text`."""
    text = entry["text"]
    if not isinstance(text, str):
        raise TypeError("text must be a string")
    messages: list[dict[str, Any]] = []
    for i in range(max(int(entry.get("turns", 1)), 1) - 1):
        messages.append({"role": "user", "content": f"(earlier message {i + 1})"})
        messages.append({"role": "assistant", "content": "(earlier answer)"})
    messages.append({"role": "user", "content": text})
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if entry.get("system"):
        body["system"] = entry["system"]
    if entry.get("tools"):
        body["tools"] = [_TOOL]
    if entry.get("thinking"):
        body["thinking"] = {"type": "enabled", "budget_tokens": 4096}
        body["max_tokens"] = max(max_tokens, 8192)
    return body
