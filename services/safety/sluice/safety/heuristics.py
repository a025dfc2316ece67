"""Prompt-injection and jailbreak heuristics, as classifiers rules can name.

A classifier scores a text from 0 to 1 and points at the phrases that made
the score; a rule fires when the score reaches its threshold. These are
pattern heuristics, not a model: each signal is a phrase family seen in
published attacks, with a weight, combined as a noisy-or so two weak signals
make a stronger one. A model-backed classifier plugs in the same way, with
`register()`.

- prompt_injection: instructions to ignore or replace the system prompt,
  requests to reveal it, forged role markers.
- jailbreak: role-play escapes ("DAN", "developer mode", pretend you have no
  rules).
- hidden_instructions: text a reader does not see or cannot read: Unicode tag
  characters, runs of zero-width characters, base64/rot13-encoded or
  HTML-hidden text that carries either of the above.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sluice.safety.detectors import Finding, Registry, Text

# (pattern, weight, anchors): patterns run on normalised text (look-alikes
# folded), and only when the lower-cased text holds one of the anchors, so a
# long prompt pays a substring search per signal rather than a regex scan.
Signal = tuple[re.Pattern[str], float, tuple[str, ...]]


def _signals(*specs: tuple[str, float, tuple[str, ...]], flags: int = re.IGNORECASE) -> list[Signal]:
    return [(re.compile(p, flags), w, anchors) for p, w, anchors in specs]


_W = r"(?:\s+\S+){0,3}?"  # up to three words in between
_INJECTION = _signals(
    (rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop)\b{_W}\s+(?:previous|prior|above|earlier|preceding"
     rf"|original|initial|system|all|any|your)\b{_W}\s+(?:instructions?|prompts?|rules|directions|guidelines"
     rf"|directives|context|messages?)\b", 0.9, ("ignor", "disregard", "forget", "skip", "overrid", "bypass", "drop")),
    (r"\bignorier\w*\s+(?:alle\s+)?(?:vorherigen|bisherigen|obigen|vorigen)\s+(?:anweisungen|instruktionen|regeln)",
     0.9, ("ignorier",)),
    (r"\bignore[rz]?\s+(?:toutes\s+)?(?:les\s+)?instructions\s+(?:précédentes|precedentes|ci-dessus)", 0.9,
     ("instructions",)),
    (r"\bignora\w*\s+(?:todas\s+)?las\s+instrucciones\s+(?:anteriores|previas)", 0.9, ("instrucciones",)),
    (rf"\b(?:reveal|print|show|repeat|output|leak|dump|tell me|what (?:is|are|was|were))\b{_W}\s+(?:system\s+prompt"
     rf"|(?:initial|original|hidden|secret)\s+(?:prompt|instructions)|developer\s+(?:message|instructions))", 0.8,
     ("prompt", "instructions", "developer")),
    (r"(?:^|\n)\s*(?:new|updated|real|actual)\s+(?:instructions|system\s+prompt|rules)\s*:", 0.6,
     ("instructions", "prompt", "rules")),
    (r"<\|im_start\|>\s*system|\[/?INST\]|<<SYS>>|(?:^|\n)\s*#{2,}\s*system\b", 0.6,
     ("im_start", "inst]", "<<sys>>", "system")),
    (r"\byou\s+are\s+no\s+longer\b", 0.4, ("longer",)),
    (r"\bfrom\s+now\s+on,?\s+you\s+(?:will|must|are)\b", 0.3, ("now on",)),
)
_JAILBREAK = _signals(
    (r"\bdo\s+anything\s+now\b", 0.8, ("anything",)),
    (r"\b(?:developer|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil)\s+mode\b", 0.8, ("mode",)),
    (r"\b(?:pretend|imagine|act\s+as\s+if|act\s+like|role-?play|you\s+are\s+now)\b[^.\n]{0,80}?\b(?:no|without"
     r"|free\s+(?:of|from)|not\s+bound\s+by)\s+(?:any\s+|all\s+)?(?:restrictions|rules|limits|limitations|filters"
     r"|guidelines|ethics|morals|censorship|policies)", 0.8, ("pretend", "imagine", "act as", "act like", "role", "are now")),
    (r"\b(?:act\s+as|you\s+are|become)\s+(?:an?\s+)?(?:unfiltered|uncensored|unrestricted|amoral)\b", 0.7,
     ("unfiltered", "uncensored", "unrestricted", "amoral")),
    (r"\bignore\s+(?:your|all|any)\s+(?:safety|ethical|content)\s+(?:guidelines|policies|filters|training|rules)",
     0.8, ("ignore",)),
    (r"\bstay\s+in\s+character\b", 0.3, ("character",)),
    (r"\bno\s+matter\s+(?:what|how\s+(?:harmful|illegal|unethical))\b", 0.3, ("matter",)),
) + _signals((r"\bDAN\b", 0.6, ("dan",)), flags=0)  # the persona, not the name Dan

_INSTRUCTIONS = _INJECTION + _JAILBREAK  # what hidden text is checked for

_TAG_RUN = re.compile("[\U000e0000-\U000e007f]{4,}")
_ZERO_WIDTH = re.compile("[\u200b\u2060\ufeff\u180e]")  # not ZWJ/ZWNJ: scripts and emoji need those
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])")
_HIDDEN_MARKUP = re.compile(
    r"<!--([\s\S]{0,2000}?)-->"
    r"|<[^>]{0,200}(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0)[^>]{0,200}>([\s\S]{0,2000}?)</",
    re.IGNORECASE)
_ROT13_HINT = re.compile(r"\brot-?13\b|\bcaesar\b", re.IGNORECASE)


def _scan(text: str, signals: list[Signal], lower: str | None = None) -> Iterable[tuple[int, int, float]]:
    lower = text.lower() if lower is None else lower
    for pattern, weight, anchors in signals:
        if any(anchor in lower for anchor in anchors):
            for m in pattern.finditer(text):
                yield m.start(), m.end(), weight


def _instruction_weight(text: str) -> float:
    """How strongly decoded or hidden text reads as an injection or jailbreak."""
    return max((w for *_, w in _scan(text, _INSTRUCTIONS)), default=0.0)


def _decoded_base64(blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() or all(c.isprintable() or c.isspace() for c in text) else None


def _injection_signals(text: Text) -> list[tuple[Finding, float]]:
    return [(text.finding("prompt_injection", s, e), w) for s, e, w in _scan(text.norm, _INJECTION, text.lower)]


def _jailbreak_signals(text: Text) -> list[tuple[Finding, float]]:
    return [(text.finding("jailbreak", s, e), w) for s, e, w in _scan(text.norm, _JAILBREAK, text.lower)]


def _hidden_signals(text: Text) -> list[tuple[Finding, float]]:
    original, found = text.original, []

    def at(start: int, end: int, weight: float) -> None:
        found.append((Finding("hidden_instructions", start, end, original[start:end]), weight))

    if not original.isascii():
        for m in _TAG_RUN.finditer(original):
            # Tag characters mirror ASCII (U+E0041 is an invisible "A"): smuggled text.
            smuggled = "".join(chr(ord(c) - 0xE0000) for c in m.group() if 0xE0020 <= ord(c) <= 0xE007E)
            at(m.start(), m.end(), 0.95 if _instruction_weight(smuggled) else 0.7)
        zero_width = [m.start() for m in _ZERO_WIDTH.finditer(original)]
        if len(zero_width) >= 3:
            at(zero_width[0], zero_width[-1] + 1, 0.5)
    for m in _BASE64.finditer(text.norm):
        decoded = _decoded_base64(m.group())
        if decoded and (weight := _instruction_weight(decoded)):
            found.append((text.finding("hidden_instructions", m.start(), m.end()), max(weight, 0.8)))
    for m in _HIDDEN_MARKUP.finditer(text.norm) if "<" in text.norm else ():
        inner = m.group(1) or m.group(2) or ""
        if weight := _instruction_weight(inner):
            found.append((text.finding("hidden_instructions", m.start(), m.end()), max(weight, 0.8)))
    if ("rot" in text.lower or "caesar" in text.lower) and _ROT13_HINT.search(text.norm):
        for s, e, w in _scan(codecs.encode(text.norm, "rot13"), _INSTRUCTIONS):
            found.append((text.finding("hidden_instructions", s, e), w))
    return found


@dataclass(frozen=True)
class Classifier:
    name: str
    # (finding, weight) for each signal in the text.
    find_signals: Callable[[Text], list[tuple[Finding, float]]]

    def classify(self, text: str | Text) -> tuple[float, list[Finding]]:
        """(score 0..1, the findings behind it): a noisy-or of the signals."""
        if isinstance(text, str):
            text = Text(text)
        signals = self.find_signals(text)
        miss = 1.0
        for _, weight in signals:
            miss *= 1.0 - weight
        return 1.0 - miss, [finding for finding, _ in signals]


CLASSIFIERS: Registry[Classifier] = Registry("classifier")
register = CLASSIFIERS.register  # makes a classifier available to policy rules by its name


for _classifier in (
    Classifier("prompt_injection", _injection_signals),
    Classifier("jailbreak", _jailbreak_signals),
    Classifier("hidden_instructions", _hidden_signals),
):
    register(_classifier)
