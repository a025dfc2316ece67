"""PII and secret detectors, and typed redaction.

A detector finds spans in text; it knows nothing of rules, actions or
requests. Text is first normalised (zero-width and tag characters dropped,
NFKC, so full-width digits become ASCII, and common Cyrillic/Greek
look-alikes mapped to Latin) so tricks do not hide a value; every span is
reported in the *original* text's offsets, so redaction replaces exactly
what the client sent.

Cost is linear in the text whatever it holds. Candidates are found by RE2
(a DFA: no backtracking), as maximal runs, so a megabyte of "1 1 1 ..." is
one candidate, not a million; Python looks only at candidates, with bounded
windows around them; libphonenumber (tens of microseconds a parse) is asked
about a bounded number of them per text. One RE2 set pass over the text
tells which built-in detectors can match at all, so ordinary prose costs
little more than that pass.

New detectors plug in with `register()`; the rule engine refers to them by name.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

import numpy as np
import phonenumbers
import re2
from phonenumbers import PhoneNumberFormat

from sluice.safety import locale, secrets

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    detector: str
    start: int  # offsets in the original text
    end: int
    value: str  # the original text of the span


# --- normalisation -----------------------------------------------------------

_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"}
# Letters that look Latin but are not; enough to undo the common tricks.
_LOOKALIKES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "ο": "o", "α": "a", "ε": "e", "ρ": "p", "ν": "v",
    "Ο": "O", "Α": "A", "Β": "B", "Ε": "E", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ρ": "P", "Τ": "T",
})
_TAGS = (0xE0000, 0xE0080)  # Unicode tag characters hide text the reader cannot see
# Characters that need folding even in NFKC-normal text.
_SPECIAL = re2.compile(("[" + "".join(sorted(_INVISIBLE)) + "".join(chr(c) for c in _LOOKALIKES)
                        + "\U000e0000-\U000e007f]").encode())
_TABLE_END = 0x20000  # folding tables cover planes 0 and 1; above, only tags and CJK compatibility fold
_CJK_COMPAT = (0x2F800, 0x2FA20)


def is_invisible(ch: str) -> bool:
    return ch in _INVISIBLE or "\U000e0000" <= ch <= "\U000e007f"


@functools.cache
def _fold_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every code point below _TABLE_END: the code point it folds to
    (when it folds to one), how many it folds to (0 invisible, 2+ e.g. 'ﬁ'),
    its row in the expansions table, and that table; then what each CJK
    compatibility ideograph folds to (one ideograph each). Built on first use
    (about 0.1 s): one NFKC call over all the characters, separated by NUL,
    which neither composes nor reorders with anything."""
    n = _TABLE_END
    chars = "".join(map(chr, range(1, 0xD800))) + "a" * 0x800 + "".join(map(chr, range(0xE000, n)))
    nfkc = [""] + unicodedata.normalize("NFKC", "\x00".join(chars)).split("\x00")
    image = np.arange(n, dtype=np.uint32)
    length = np.ones(n, dtype=np.uint8)
    rows = np.zeros(n, dtype=np.int64)
    special = {cp for cp in range(1, n) if nfkc[cp] != chr(cp) and not 0xD800 <= cp < 0xE000}
    special |= {ord(c) for c in _INVISIBLE} | set(_LOOKALIKES)
    expansions: list[str] = [""]
    for cp in special:
        folded = "" if is_invisible(chr(cp)) else nfkc[cp].translate(_LOOKALIKES)
        length[cp] = len(folded)
        if len(folded) == 1:
            image[cp] = ord(folded)
        elif folded:
            rows[cp] = len(expansions)
            expansions.append(folded)
    table = np.zeros((len(expansions), max(map(len, expansions))), dtype=np.uint32)
    for row, folded in enumerate(expansions):
        table[row, :len(folded)] = [ord(c) for c in folded]
    compat = np.array([ord(unicodedata.normalize("NFKC", chr(cp))) for cp in range(*_CJK_COMPAT)],
                      dtype=np.uint32)
    return image, length, rows, table, compat


def _fold(text: str) -> tuple[str, np.ndarray | None, bytes | None]:
    """(folded text, for each of its characters the index in `text` or None
    when every character maps to itself position for position, the folded
    text's UTF-8 when it was made on the way). Vectorised with numpy over
    code points: no Python step per character (about 3 ms for 400 KB of
    Cyrillic, where every letter is looked up)."""
    if text.isascii():
        return text, None, None
    if unicodedata.is_normalized("NFKC", text):
        utf8 = text.encode("utf-8", "surrogatepass")
        if not _SPECIAL.search(utf8):
            return text, None, utf8  # the common case: nothing to fold
    image, length, rows, table, compat = _fold_tables()
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if int(cp.max()) < _TABLE_END:
        index, img, count = cp, image.take(cp), length.take(cp)
    else:
        low = cp < _TABLE_END
        index = np.where(low, cp, 0)
        img = np.where(low, image.take(index), cp)
        count = np.where(low, length.take(index), 1).astype(np.uint8)
        count[(cp >= _TAGS[0]) & (cp < _TAGS[1])] = 0
        ideographs = (cp >= _CJK_COMPAT[0]) & (cp < _CJK_COMPAT[1])
        img[ideographs] = compat.take(cp[ideographs] - _CJK_COMPAT[0])
    if not (count != 1).any():
        return img.tobytes().decode("utf-32-le", "surrogatepass"), None, None
    ends = np.cumsum(count, dtype=np.int64)
    starts = ends - count
    out = np.zeros(int(ends[-1]), dtype=np.uint32)
    single = count == 1
    out[starts[single]] = img[single]
    many = np.flatnonzero(count > 1)
    if many.size:
        k, row = count[many], rows.take(index[many])
        for j in range(int(k.max())):
            sel = k > j
            out[starts[many[sel]] + j] = table[row[sel], j]
    origin = np.repeat(np.arange(len(cp), dtype=np.int64), count)
    return out.tobytes().decode("utf-32-le", "surrogatepass"), origin, None


def normalize(text: str) -> tuple[str, list[int]]:
    """(normalised text, for each of its characters the index in `text`)."""
    norm, origin, _ = _fold(text)
    return norm, list(range(len(norm))) if origin is None else origin.tolist()


_SURROGATE = re.compile("[\ud800-\udfff]")


class Text:
    """A text and its normalised form, made once and shared by every matcher,
    with views made on first use: `lower`, `language`, `utf8`.

    `region` is the tenant's region (ISO 3166-1 alpha-2, e.g. "GB"), a hint
    for values written the local way, such as phone numbers without a
    country code; None when unknown."""

    __slots__ = ("original", "norm", "region", "_origin", "_lower", "_language", "_utf8", "_char_of_byte", "_seen",
                 "scores")

    def __init__(self, original: str, *, region: str | None = None) -> None:
        self.original = original
        self.region = region.upper() if region else None
        self.norm, self._origin, self._utf8 = _fold(original)
        if not self.norm.isascii() and _SURROGATE.search(self.norm):
            # A lone surrogate (JSON can carry one, UTF-8 cannot) reads as U+FFFD,
            # one for one, so RE2 and the model can take the text.
            self.norm, self._utf8 = _SURROGATE.sub("\ufffd", self.norm), None
        self._lower: str | None = None
        self._language: str | bool | None = False  # False: not looked at yet
        self._char_of_byte: np.ndarray | None = None
        self._seen: frozenset[str] | None = None
        # Classifier results by name: two rules, or two branches of one rule,
        # that ask the same classifier about the same text run it once.
        self.scores: dict[str, tuple[float, list[Finding]]] = {}

    @property
    def lower(self) -> str:
        """The normalised text in lower case, offset for offset (İ, the one
        letter whose lower case is two characters, becomes i)."""
        if self._lower is None:
            self._lower = self.norm.replace("\u0130", "I").lower()
        return self._lower

    @property
    def language(self) -> str | None:
        """ISO 639-1 guess from the first 2 KB (sluice.safety.locale), or None."""
        if self._language is False:
            self._language = locale.detect_language(self.norm)
        return self._language  # type: ignore[return-value]  # never False past the line above

    @property
    def utf8(self) -> bytes:
        """The normalised text as UTF-8, what the RE2 patterns scan."""
        if self._utf8 is None:
            self._utf8 = self.norm.encode("utf-8", "surrogatepass")
        return self._utf8

    def char_offset(self, byte_offset: int) -> int:
        """Offset in `norm` of a byte offset in `utf8`."""
        if len(self.utf8) == len(self.norm):
            return byte_offset  # ASCII
        if self._char_of_byte is None:
            lead = (np.frombuffer(self.utf8, dtype=np.uint8) & 0xC0) != 0x80
            self._char_of_byte = np.concatenate(([0], np.cumsum(lead)))
        return int(self._char_of_byte[byte_offset])

    def finding(self, name: str, start: int, end: int) -> Finding:
        """A span of the normalised text as a finding in the original's offsets."""
        if self._origin is not None:
            start, end = int(self._origin[start]), int(self._origin[end - 1]) + 1
        return Finding(name, start, end, self.original[start:end])


# --- detectors -----------------------------------------------------------------

Span = tuple[int, int]
Finder = Callable[[str], Iterable[Span]]
TextFinder = Callable[[Text], Iterable[Span]]


@dataclass(frozen=True)
class Detector:
    """A named span finder. `find_spans` gets the normalised str, or the
    whole Text (region, language, cached views) when `needs_text` is set,
    and yields (start, end) in normalised offsets."""

    name: str
    find_spans: Finder | TextFinder
    # A cheap test that text without it cannot match; the output filter
    # scans a small window per chunk, where most chunks have no candidate.
    # It gets the Text, so lower-casing is done once for every matcher.
    prefilter: Callable[[Text], object] | None = None
    needs_text: bool = False

    def find(self, text: str | Text) -> list[Finding]:
        if isinstance(text, str):
            text = Text(text)
        if self.prefilter is not None and not self.prefilter(text):
            return []
        spans = self.find_spans(text if self.needs_text else text.norm)  # type: ignore[arg-type]  # needs_text says which the detector takes
        return [text.finding(self.name, start, end) for start, end in spans if end > start]


def _re2(pattern: str) -> re2._Regexp:
    options = re2.Options()
    options.max_mem = 64 << 20
    return re2.compile(pattern.encode(), options)


def _matches(pattern: re2._Regexp, text: Text) -> Iterator[tuple[int, ...]]:
    """Each match of an RE2 pattern as (start, end, g1 start, g1 end, ...)
    in normalised-text offsets; -1 for a group that did not take part."""
    for m in pattern.finditer(text.utf8):
        spans = [m.span(i) for i in range(pattern.groups + 1)]
        yield tuple(-1 if b < 0 else text.char_offset(b) for span in spans for b in span)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _at(text: str, i: int) -> str:
    """The character at i, or a space outside the text."""
    return text[i] if 0 <= i < len(text) else " "


# --- email ---------------------------------------------------------------------

# Obfuscated addresses are found only with a top-level domain someone uses,
# so "look at the dot matrix" is not an address (IANA root zone, common part).
_CC_TLDS = (
    "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo br bs bt bw by bz ca cc "
    "cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg er es et eu fi fj fk fm fo fr ga "
    "gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo "
    "jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo mp mq mr "
    "ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re "
    "ro rs ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt "
    "tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw").split()
_G_TLDS = (
    "com org net edu gov mil int info biz name pro mobi asia tel aero coop museum jobs travel app dev ai xyz online "
    "site tech cloud email mail shop store blog news live life world today space website club design agency media "
    "digital solutions services systems network group company inc ltd llc law bank money finance capital fund "
    "health care berlin london paris tokyo nyc amsterdam").split()
_TLD = "(?i:" + "|".join(sorted(_CC_TLDS + _G_TLDS, key=len, reverse=True)) + ")"
_ALNUM = r"[\p{L}\p{N}]"
_LABEL = rf"{_ALNUM}(?:[\p{{L}}\p{{N}}\-]*{_ALNUM})?"
_DOMAIN = rf"(?:{_LABEL}\.)+\p{{L}}\p{{L}}+"
_ODOT = r"(?:[ \t]{0,2}[\[({<][ \t]{0,2}(?i:dot|\.)[ \t]{0,2}[\])}>][ \t]{0,2}| (?i:dot) )"
_BRACKET_AT = r"[ \t]{0,2}[\[({<][ \t]{0,2}(?i:at|@)[ \t]{0,2}[\])}>][ \t]{0,2}"
_LWORD = r"[\p{L}\p{N}_+\-]+"
_OLOCAL = rf"{_LWORD}(?:(?:\.|{_ODOT}){_LWORD})*"
_ODOMAIN = rf"(?:{_LABEL}(?:\.|{_ODOT}))+{_TLD}"
# The bare word "at" is everyday English: only with a spelt-out dot in the domain.
_BARE_DOMAIN = rf"(?:{_LABEL}(?:\.|{_ODOT}))*{_LABEL}{_ODOT}(?:{_LABEL}(?:\.|{_ODOT}))*{_TLD}"
_EMAIL_FORMS = (
    # plain, and "@" written as an escape or entity: jane\u0040example.com, jane&#64;…, jane%40…
    _re2(rf"(?P<local>[\p{{L}}\p{{N}}_.%+\-]+)(?:@|\\u0040|\\x40|&#0*64;|&#[xX]0*40;|&commat;)"
         rf"(?P<domain>{_DOMAIN})"),
    _re2(rf"(?P<local>[\p{{L}}\p{{N}}_.+\-]+)%40(?P<domain>{_DOMAIN})"),
    # jane [at] example [dot] com, jane AT example.com
    _re2(rf"(?P<local>{_OLOCAL})(?:{_BRACKET_AT}| AT | At )(?P<domain>{_ODOMAIN})"),
    # name dot surname at domain dot com
    _re2(rf"(?P<local>{_OLOCAL}) at (?P<domain>{_BARE_DOMAIN})"),
)
_BARE_FORM = 3
# Words that stand before or after "at" in prose, never as a mailbox or domain.
_NOT_MAILBOX = frozenset(
    "look looks looking looked meet meets meeting met arrive arrives arrived arriving stay stayed staying be is are "
    "was were been me you us them him her it we they i here there good better best bad aim aimed point pointed laugh "
    "laughed stare stared staring glance glanced smile smiled work works working worked live lives lived living born "
    "available reach reached found find seen see held based located sold buy bought priced rated start starts "
    "started end ends ended once least most all home times risk sit sat stand stood wait waited".split())
_NOT_DOMAIN = frozenset(
    "the a an this that these those my your our his her their its home work school least all once first last night "
    "noon midnight dawn times risk random large hand will some any each every one".split())
_WORD_RE = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s")


def _email_spans(text: Text) -> Iterator[Span]:
    norm = text.norm
    for form, pattern in enumerate(_EMAIL_FORMS):
        pos = 0
        while True:
            m = pattern.search(text.utf8, pos)
            if m is None:
                break
            start, end = text.char_offset(m.start()), text.char_offset(m.end())
            local_end, domain_start = text.char_offset(m.end(1)), text.char_offset(m.start(2))
            span = _email_ok(norm, start, end, local_end, domain_start, form)
            if span:
                yield span
                pos = m.end()
            else:  # the domain may be the mailbox of the next address
                pos = m.start(2)


def _email_ok(norm: str, start: int, end: int, local_end: int, domain_start: int, form: int) -> Span | None:
    while start < local_end and norm[start] in "._%+-":
        start += 1  # "...jane@x.com": the address starts at the letter
    before = _at(norm, start - 1)
    if start == local_end or local_end - start > 64 or _is_word(before) or before in ".%+-":
        return None  # no mailbox, or one longer than RFC 5321's 64 characters
    after = _at(norm, end)
    if _is_word(after) or after == "-":
        return None  # the domain runs on: not where it seemed to end
    if after == ":" and not _at(norm, end + 1).isspace():
        return None  # git@github.com:org/repo.git, an SSH remote (user@host:path)
    scheme = norm.rfind("://", max(0, start - 256), start)
    if scheme >= 0 and not _SPACE.search(norm, scheme, start):
        return None  # https://user:token@host: URL user-info, not a mailbox
    if form == _BARE_FORM:
        if after == "/":
            return None  # "the form at example dot com/contact": a web address
        words = _WORD_RE.findall(norm[start:local_end].lower())
        first = _WORD_RE.search(norm[domain_start:end].lower())
        if not words or words[-1] in _NOT_MAILBOX or (first and first.group() in _NOT_DOMAIN):
            return None
    return start, end


# --- payment cards -------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# How cards are printed when grouped: Amex 4-6-5, Diners 4-6-4, and the rest
# in fours with a shorter last group (4-4-4-4, 4-4-4-4-3, 4-4-4-3 ...).
_CARD_GROUPS = {(4, 6, 5), (4, 6, 4)}
# Major industry identifiers of the schemes in use (ISO/IEC 7812): 2 Mastercard
# 2-series, 3 Amex/JCB/Diners, 4 Visa, 5 Mastercard/Maestro, 6 Discover/UnionPay/Maestro.
_CARD_FIRST = frozenset("23456")
_CARD_RUN = _re2(r"[0-9](?:[ .\-]?[0-9]){12,}")
_CARD_SEP = re.compile(r"[ .\-]")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_LONG_RUN = 120  # characters: longer runs of numbers are tables or noise, looked into only by shape


def _card_ok(raw: str) -> bool:
    groups = _CARD_SEP.split(raw)
    digits = "".join(groups)
    sizes = tuple(map(len, groups))
    fours = all(n == 4 for n in sizes[:-1]) and 1 <= sizes[-1] <= 4
    if len(groups) > 1 and (not (fours or sizes in _CARD_GROUPS) or len(set(_CARD_SEP.findall(raw))) > 1):
        return False  # e.g. the tail of an IBAN, 3704 0044 0532 0130 01 (two digits first); or mixed separators
    return (13 <= len(digits) <= 19 and digits[0] in _CARD_FIRST and len(set(digits)) > 1
            and luhn_ok(digits))


def _card_spans(text: Text) -> Iterator[Span]:
    norm = text.norm
    for start, end in _matches(_CARD_RUN, text):
        if _is_word(_at(norm, start - 1)) or _is_word(_at(norm, end)) or _at(norm, start - 1) == "-":
            continue
        if end - start > _LONG_RUN:
            continue
        raw = norm[start:end]
        if _card_ok(raw):
            yield start, end
        else:
            yield from _cards_inside(raw, start)


def _cards_inside(raw: str, offset: int) -> Iterator[Span]:
    """Cards in a run of numbers that is not one card, in whole groups: at
    its head ("4111 1111 1111 1111 12/29 123"), after a leading number of
    one to three digits ("#1 4111 ...", "room 12 415-..."), and one after
    another ("4111 ... 1111 4242 ... 4242"); or a group of 13 to 19 digits
    on its own. A card is not looked for at any other place in a run:
    tracking numbers are long runs, and one window in ten of them passes Luhn."""
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(raw)]
    # A leading label number ("#1", "room 12") is not part of what follows.
    i = 1 if len(groups) > 3 and groups[0][1] - groups[0][0] <= 3 else 0
    while i < len(groups):
        end = next((i + n for n in (5, 4, 3) if i + n <= len(groups)
                    and _card_ok(raw[groups[i][0]:groups[i + n - 1][1]])), None)
        if end is None:
            break
        yield offset + groups[i][0], offset + groups[end - 1][1]
        i = end  # a card right after a card
    for s, e in groups[i:]:  # a lone long group (the run's other groups are not a card's)
        if 13 <= e - s <= 19 and _card_ok(raw[s:e]):
            yield offset + s, offset + e


# --- US social security numbers ------------------------------------------------


def _ssn_ok(m: re.Match[str]) -> bool:
    area, group, serial = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


_SSN_PARTS = re.compile(r"([0-9]{3})[ .\-]?([0-9]{2})[ .\-]?([0-9]{4})")
_SSN_WRITTEN = _re2(r"[0-9]{3}[\- ][0-9]{2}[\- ][0-9]{4}")
# After "SSN", "social security number", "soc. sec. no.": also without separators.
_SSN_NAMED = _re2(
    r"(?i)(?:\bssn|\bsocial[ \-]security(?:[ \-](?:number|no|nr|num))?"
    r"|\bsoc\.? ?sec\.?(?: ?(?:number|no|nr|num))?)"
    r"\.?[ \t]*(?:#|no\.?|number|nr\.?)?[ \t]*[:#=\-(]?[ \t]*(?:is[ \t]+)?"
    r"(?P<n>[0-9]{3}[ .\-]?[0-9]{2}[ .\-]?[0-9]{4})")


def _ssn_spans(text: Text) -> Iterator[Span]:
    norm = text.norm
    found: set[Span] = set()
    for start, end in _matches(_SSN_WRITTEN, text):
        before, after = _at(norm, start - 1), _at(norm, end)
        if _is_word(before) or _is_word(after) or "-" in (before, after) or norm[start + 3] != norm[start + 6]:
            continue  # glued to more, or two different separators
        if norm[start + 3] == " " and ((before in " ." and _at(norm, start - 2).isdigit())
                                       or (after in " ." and _at(norm, end + 1).isdigit())):
            continue  # spaced groups inside a longer run of numbers (dashed ones stand alone: a list)
        found.add((start, end))
    for *_, start, end in _matches(_SSN_NAMED, text):
        if not _is_word(_at(norm, end)):
            found.add((start, end))
    for start, end in sorted(found):
        parts = _SSN_PARTS.fullmatch(norm[start:end])
        if parts and _ssn_ok(parts):
            yield start, end


# --- IBAN ------------------------------------------------------------------------

# Lengths by country (SWIFT IBAN registry); others need 15..34.
_IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21, "AT": 20,
                 "IE": 22, "PL": 28, "PT": 25, "SE": 24, "NO": 15, "DK": 18, "FI": 18, "LU": 20, "GR": 27,
                 "CZ": 24, "HU": 28, "RO": 24, "BG": 22, "HR": 21, "SI": 19, "SK": 24, "LT": 20, "LV": 21,
                 "EE": 20, "MT": 31, "CY": 28, "LI": 21, "MC": 27, "SM": 27, "IS": 26, "TR": 26, "SA": 24,
                 "AE": 23, "IL": 23, "BR": 29}


# Countries that issue IBANs; RF (creditor references) shares the mod-97 check but is not one.
_IBAN_COUNTRIES = frozenset((
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI GL GR GT HR HU "
    "IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI NL NO OM PK PL PS PT QA RO RS RU "
    "SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE").split())
_IBAN_SEP = re.compile(r"[ \-]")


def iban_ok(candidate: str) -> bool:
    """Mod-97 check (ISO 13616) of an IBAN in any case, grouped by spaces or dashes."""
    iban = _IBAN_SEP.sub("", candidate).upper()
    if iban[:2] not in _IBAN_COUNTRIES or not iban[2:4].isdigit() or not iban.isalnum() or not iban.isascii():
        return False
    expected = _IBAN_LENGTHS.get(iban[:2])
    if (expected and len(iban) != expected) or not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


# Printed in groups of four (or not at all), upper or lower case, spaces or dashes.
_IBAN_RUN = _re2(r"[A-Za-z]{2}[0-9]{2}(?:[ \-]?[A-Za-z0-9]{4}){2,}(?:[ \-]?[A-Za-z0-9]{1,3})?")
_IBAN_GROUP = re.compile(r"[A-Za-z0-9]+")


def _iban_spans(text: Text) -> Iterator[Span]:
    norm = text.norm
    for start, end in _matches(_IBAN_RUN, text):
        # A run may hold several IBANs and words of four letters ("AT61 … 3201
        # oder CH93 …"): each group that starts like one (two letters of an
        # IBAN country, two digits) is tried with as many characters after it
        # as that country's IBANs have. A long run is junk ("de89de89…"),
        # tried from its start only, so the cost stays linear.
        stop = min(end, start + 48) if end - start > _LONG_RUN else end
        groups = [(m.start(), m.end()) for m in _IBAN_GROUP.finditer(norm, start, stop)]
        ends_at = {}  # characters from the run's start -> index of the group ending there
        total = 0
        for j, (s, e) in enumerate(groups):
            total += e - s
            ends_at[total] = j
        before, done = 0, start
        for i, (s, e) in enumerate(groups):
            country = norm[s:s + 2].upper()
            if s >= done and country in _IBAN_COUNTRIES and norm[s + 2:s + 4].isdigit() and not (
                    i == 0 and _is_word(_at(norm, s - 1))):
                want = _IBAN_LENGTHS.get(country)
                for size in (want,) if want else range(34, 14, -1):
                    last = ends_at.get(before + size)
                    if last is not None and iban_ok(norm[s:groups[last][1]]):
                        yield s, groups[last][1]
                        done = groups[last][1]
                        break
            before += e - s


# --- IP addresses ------------------------------------------------------------------

_IPV4_RUN = _re2(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3,}")
_IPV6_RUN = _re2(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,}(?:\.[0-9]{1,3}){0,3}")
# The word just before a section or clause number: § 4.2.1.3, section 1.2.3.4, Abschnitt 2.1.1.4.
_SECTION_WORDS = frozenset(
    "§ §§ section sections sect sec secs clause clauses cl article articles art arts chapter chapters chap ch "
    "paragraph paragraphs para paras appendix annex annexe schedule rule rules item items step steps figure "
    "figures fig figs table tables tab requirement requirements req control controls abschnitt abschn kapitel "
    "kap ziffer ziff absatz abs artikel anhang cláusula clausula sección seccion secc capítulo capitulo artículo "
    "articulo apartado chapitre paragraphe alinéa alinea articolo sezione capitolo punto hoofdstuk lid eq eqs eqn "
    "equation equations theorem lemma definition def remark example exercise problem question page pp line verse "
    "part level stage phase point pt".split())
# The word just before a version number: version 10.2.3.4, release: 3.10.12.1, "upgrade to 1.2.3.4".
_VERSION_WORDS_BEFORE = frozenset(
    "v ver version versions release releases build builds rev revision patch firmware fw sdk tag versión "
    "versione versie".split())
_VERSION_VERBS = frozenset("upgrade upgraded upgrades update updated updates downgrade downgraded bump bumped pin "
                           "pinned migrate migrated".split())
_LAST_WORDS = re.compile(r"(?:([^\W\d_]+)\s+)?([^\W\d_]+|§+)[\s.:=#]*$")


def _numbered_by_words(before: str) -> bool:
    """Whether the words just before a dotted number make it a section or a version."""
    m = _LAST_WORDS.search(before)
    if not m:
        return False
    last = m.group(2)
    return (last in _SECTION_WORDS or last[0] == "§" or last in _VERSION_WORDS_BEFORE
            or (last == "to" and m.group(1) in _VERSION_VERBS))


_RANGE_BETWEEN = re.compile(r"\s*(?:-|–|—|~|\.\.\.?|to|through|thru|until|till|and|bis|und|à|au|et|hasta|y|al|"
                            r"fino a|e|tot|en|a)\s*")
_VERSION_WORDS = re.compile(
    r"\b(?:upgrad|updat|downgrad|migrat|bump|version|release|patch|firmware|install|changelog|package|librar|"
    r"dependenc|sdk|driver|kernel|plugin|software|build|aktualisier|actualiz|aggiorn)|mise à jour")
_IP_WORDS = re.compile(
    r"\b(?:ips?|ipv4|address(?:es)?|addr|hosts?|servers?|subnet|network|gateway|dns|firewall|routes?|router|"
    r"proxy|client|ping|dhcp|cidr|allow(?:list)?|whitelist|block(?:list)?|ban|vpn|lan|wan|interface|listen|"
    r"bind|connect|ssh|curl|http|adresse|dirección|indirizzo|endereço)\b")
# Nearby words that make a dotted quad read as a version ("Kubernetes v1.28.3.1 and Helm 3.13.2.0").
_VERSION_NEAR = re.compile(r"\bv\d+(?:\.\d+)+|\bversions?\b|\bver\.|\breleases?\b|\bfirmware\b|\bchangelog\b|"
                           r"\binstall(?:ed|s)?\b|\bupgrad|\bdowngrad|\bupdate[sd]?\b|\bpatch(?:ed|es)?\b|\bbuild\b")
_IP_WINDOW = 80  # characters before a candidate that are read for its context, back to the clause's start
_CLAUSE_END = re.compile(r"[;!?\n]|\.\s")


def _ipv4_candidates(text: Text) -> list[tuple[int, int, tuple[int, ...]]]:
    norm, out = text.norm, []
    for start, end in _matches(_IPV4_RUN, text):
        before, after = _at(norm, start - 1), _at(norm, end)
        if end - start > 15 or _is_word(before) or before == "." or _is_word(after):
            continue  # 1.2.3.4.5 (a run of five), v1.2.3.4, 1.2.3.4a
        parts = norm[start:end].split(".")
        octets = tuple(map(int, parts))
        octal = any(len(p) > 1 and p[0] == "0" for p in parts)  # 010.1.1.1 is octal to some parsers
        if len(parts) == 4 and max(octets) <= 255 and not octal:
            out.append((start, end, octets))
    return out


def _is_global(octets: tuple[int, ...]) -> bool:
    return ipaddress.IPv4Address(".".join(map(str, octets))).is_global


def _plain_range(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """A bare "A to B" reads as versions when both share their first two
    parts, every part is below 100, and both are public addresses (a
    private or documentation range is a network's)."""
    return a[:2] == b[:2] and max(a + b) < 100 and _is_global(a) and _is_global(b)


def _ip_spans(text: Text) -> Iterator[Span]:
    norm = text.norm
    v6 = list(_ipv6_spans(text))
    # An IPv4 address inside an IPv6 one (::ffff:192.0.2.1) is that address, not another.
    v6_ends = [e for _, e in v6]
    v4 = [c for c in _ipv4_candidates(text)
          if (i := bisect.bisect_right(v6_ends, c[0])) == len(v6) or v6[i][0] > c[0]]
    excluded = [False] * len(v4)
    for i, (start, _end, octets) in enumerate(v4):
        window = norm[max(0, start - _IP_WINDOW):start].lower()
        line = _CLAUSE_END.split(window)[-1]
        if _numbered_by_words(window[-24:]):
            excluded[i] = True  # "§ 4.2.1.3", "section 1.2.3.4", "version 10.2.3.4"
        elif _VERSION_NEAR.search(line) and not _IP_WORDS.search(line) and _is_global(octets):
            excluded[i] = True  # a public address among version talk is a version; 10.x, 192.168.x never are
        if i and start - v4[i - 1][1] <= 12 and _RANGE_BETWEEN.fullmatch(norm[v4[i - 1][1]:start].lower()):
            prev = v4[i - 1]
            if excluded[i - 1]:
                excluded[i] = True  # the far end of "versions 1.2.3.4-1.2.3.9"
            else:
                line = _CLAUSE_END.split(norm[max(0, prev[0] - _IP_WINDOW):prev[0]].lower())[-1]
                if not _IP_WORDS.search(line) and (_VERSION_WORDS.search(line) or _plain_range(prev[2], octets)):
                    excluded[i - 1] = excluded[i] = True  # "upgrade from 2.0.0.1 to 2.0.0.9"
    yield from ((s, e) for (s, e, _), x in zip(v4, excluded) if not x)
    yield from v6


def _ipv6_spans(text: Text) -> Iterator[Span]:
    norm = text.norm
    for start, end in _matches(_IPV6_RUN, text):
        before, after = _at(norm, start - 1), _at(norm, end)
        if _is_word(before) or before in ":." or _is_word(after) or after == ":" or end - start > 45:
            continue  # std::vector, Foo::bar, or a run of colons
        candidate = norm[start:end]
        if not any(c.isdigit() for c in candidate) or ("::" not in candidate and candidate.count(":") < 7):
            continue  # A::B in code; times (10:45:30) and MAC addresses have no "::" and too few groups
        try:
            socket.inet_pton(socket.AF_INET6, candidate)
        except OSError:
            continue
        yield start, end


# --- dates of birth --------------------------------------------------------------

# Month names (and the usual abbreviations) in en, de, fr, es, it, pt, nl.
_MONTH_NAMES: dict[str, int] = {}
for _number, _names in enumerate((
    "january jan januar jänner janvier janv enero ene gennaio gen janeiro januari",
    "february feb februar février fevrier févr fév febrero febbraio fevereiro fev februari",
    "march mar märz maerz mars marzo março marco maart mrt",
    "april apr avril avr abril aprile",
    "may mai mayo maggio mag maio mei",
    "june jun juni juin junio giugno giu junho",
    "july jul juli juillet juil julio luglio lug julho",
    "august aug août aout agosto ago augustus",
    "september sep sept septembre septiembre setiembre settembre set setembro",
    "october oct oktober okt octobre octubre ottobre ott outubro out",
    "november nov novembre noviembre novembro",
    "december dec dezember dez décembre decembre déc diciembre dic dicembre dezembro",
), start=1):
    for _name in _names.split():
        _MONTH_NAMES.setdefault(_name, _number)
_MONTH = "(?:" + "|".join(sorted(_MONTH_NAMES, key=len, reverse=True)) + ")"
# Year first, as Chinese and Japanese write it; Japanese also by era (昭和60年 is 1985).
_ERAS = {"明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018}
_CJK_DATE = (r"(?:" + "|".join(_ERAS) + r")?[ \t]*[0-9]{1,4}[ \t]*年"
             r"[ \t]*[0-9]{1,2}[ \t]*月[ \t]*[0-9]{1,2}[ \t]*日")
_DATE = (rf"[0-9]{{4}}[\-/.][0-9]{{1,2}}[\-/.][0-9]{{1,2}}|{_CJK_DATE}"
         rf"|[0-9]{{1,2}}[\-/.][0-9]{{1,2}}[\-/.](?:[0-9]{{4}}|[0-9]{{2}})"
         rf"|[0-9]{{1,2}}(?:st|nd|rd|th|er|e|º|°|ª)?\.?[ \t]*(?:(?:of|de|del)[ \t]+)?{_MONTH}\.?,?[ \t]*"
         rf"(?:(?:de|del)[ \t]+)?[0-9]{{4}}"
         rf"|{_MONTH}\.?[ \t]*[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ \t]*[0-9]{{4}}"
         rf"|[0-9]{{1,2}}[\-/]{_MONTH}\.?[\-/](?:[0-9]{{4}}|[0-9]{{2}})"  # 12-Mar-1985
         r"|(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])")  # 19850312, ISO 8601 basic
# "born", in the languages above: may be followed by a few words ("born in Leeds on").
_BORN = (r"\bborn|\bgeboren|\bnée?|\bné\(e\)|\bnacid[oa]|\bnascid[oa]|\bnat[oa](?: a [\p{L}' ]+)? il"
         r"|\bgeb\. op")
# Nouns for the date itself: only a colon or "is" between them and the date.
_BIRTH_DATE = (r"\bdate of birth|\bbirth ?date|\bbirthdate|\bd\.? ?o\.? ?b\b\.?|\bbirthday|\bgeburtsdatum"
               r"|\bgeburtstag|\bgeb\.[ \-]?datum|\bgeb\.(?: am)?|\bdate de naissance|\bnaissance"
               r"|\bfecha de nacimiento|\bf\. ?nac\.?"
               r"|\bnacimiento|\bdata di nascita|\bdata de nascimento|\bnascimento|\bgeboortedatum"
               r"|生年月日|出生日期|出生于|出生於|生日")
_LINK = r"(?:is|was|ist|war|est|es|era|è|é|am|le|el|il|em|op|on|the|der|den)"
_DOB = _re2(
    rf"(?i)(?:(?:{_BORN})(?:[ \t]*[:,(][ \t]*|[ \t]+)(?:[\p{{L}}'’.]+[ \t,]+){{0,4}}"
    rf"|(?:{_BIRTH_DATE})[ \t]*(?:\([^)\n]*\))?[ \t]*[:：\-–=]?[ \t]*(?:{_LINK}[ \t]+){{0,2}})"
    rf"(?P<date>{_DATE})"
    # 1992年11月3日生まれ, 昭和60年3月12日生 (but not 生産, production)
    rf"|(?P<date2>{_CJK_DATE})[ \t]*(?:生まれ|生(?:[)）,，。、 \t\n(（]|$))")
_DATE_NUMBERS = re.compile(r"[0-9]+")
_DATE_MONTH = re.compile(r"[^\W\d_]+")


def _birth_date_ok(value: str) -> bool:
    """A real calendar date with a birth year from 1900 to this year; a
    numeric day and month may be in either order (12/03 or 03/12)."""
    numbers = [int(n) for n in _DATE_NUMBERS.findall(value)]
    words = [w.lower() for w in _DATE_MONTH.findall(value) if w.lower() in _MONTH_NAMES]
    today = date.today()  # noqa: DTZ011 - only the year is used, to bound a birth year

    def full(year: int) -> int:  # 03.11.72: the century that puts it in the past
        return year + (1900 if year + 2000 > today.year else 2000) if year < 100 else year

    if words and len(numbers) == 2:
        candidates = [(full(numbers[1]), _MONTH_NAMES[words[0]], numbers[0])]
    elif len(numbers) == 1 and len(value) == 8:
        candidates = [(numbers[0] // 10000, numbers[0] // 100 % 100, numbers[0] % 100)]  # 19850312
    elif len(numbers) == 3 and value[:2] in _ERAS:
        candidates = [(_ERAS[value[:2]] + numbers[0], numbers[1], numbers[2])]
    elif len(numbers) == 3 and numbers[0] > 999:
        candidates = [(numbers[0], numbers[1], numbers[2])]  # 1985-03-12, 1985年3月12日
    elif len(numbers) == 3:
        a, b, year = numbers
        candidates = [(full(year), b, a), (full(year), a, b)]
    else:
        return False
    for year, month, day in candidates:
        try:
            born = date(year, month, day)
        except ValueError:
            continue
        if year >= 1900 and born <= today:
            return True
    return False


def _dob_spans(text: Text) -> Iterator[Span]:
    norm = text.norm
    for m in _matches(_DOB, text):
        start, end = (m[2], m[3]) if m[2] >= 0 else (m[4], m[5])
        if not _at(norm, end).isdigit() and _birth_date_ok(norm[start:end]):
            yield start, end


# --- phone numbers -----------------------------------------------------------------

# A run of digits with phone punctuation, 7 digits at least; "+" and "(" may lead.
_PHONE_RUN = _re2(r"(?:\+|\(\+?)?[0-9](?:(?:[ .\-/]| ?[/\-] ?|\) ?| ?\()?[0-9]){6,}")
_NON_DIGIT = re.compile(r"[^0-9]")
_EXIT_011 = re.compile(r"011[ .\-]")
_DIGITS = re.compile(r"[0-9]+")
# Dates and dotted quads are the commonest runs of 7+ digits in prose; a
# date may run on into a time ("01/05/2024 10:30").
_DATE_SHAPE = re.compile(r"[0-9]{1,2}([./\-])[0-9]{1,2}\1[0-9]{2,4}|[0-9]{4}([./\-])[0-9]{1,2}\2[0-9]{1,2}")
_DATE_INSIDE = re.compile(r"(?<![0-9])(?:[0-9]{1,2}([./\-])[0-9]{1,2}\1(?:19|20)[0-9]{2}"
                          r"|(?:19|20)[0-9]{2}([./\-])[0-9]{1,2}\2[0-9]{1,2})(?![0-9])")
_QUAD_SHAPE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_SSN_SHAPE = re.compile(r"[0-9]{3}([\- ])[0-9]{2}\1[0-9]{4}")  # the US SSN's, which no country writes phones in
# US and Canada as written there (NANP), and Brazil's (11) 91234-5678.
_NANP_SHAPE = re.compile(r"(?:1[\-. ]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[\-. ])[2-9][0-9]{2}[\-. ][0-9]{4}")
_BR_SHAPE = re.compile(r"\([1-9][0-9]\) ?9?[0-9]{4}[\- ]?[0-9]{4}|[1-9][0-9] 9?[0-9]{4}-[0-9]{4}")
# Words that say a number is a phone number, in the languages above and a few more.
_PHONE_WORDS = re.compile(
    r"tel\b|tél|phone|call|mobile|cell|fax|whatsapp|sms|text me|reach me|ring|dial|hotline|contact|"
    r"telefon|handy|mobil|rufnummer|durchwahl|anruf|téléphone|telephone|portable|appel|joindre|"
    r"telefone|celular|móvil|movil|teléfono|llam|llám|cellulare|chiam|telefoon|bel |mobiel|"
    r"tlf|puhelin|電話|携帯|电话|手机|연락처|전화")
# Words that say it is something else: an order, an invoice, a code.
_NOT_PHONE_WORDS = re.compile(
    r"order|invoice|inv\b|ref\b|reference|ticket|case\b|account|acct|iban|isbn|issn|doi|serial|s/n|sku|"
    r"tracking|parcel|shipment|customer|vat|tax|siret|siren|passport|licen[cs]e|policy|claim|"
    r"bestell|rechnung|kunden|auftrag|vertrag|sendung|liefer|commande|facture|référence|dossier|pedido|factura|"
    r"fattura|ordine|bestelling|factuur|pratica|注文|订单|isin|ean|upc|gtin|patent|serie|ssn|social security|"
    r"nhs|insurance|medicare|mrn|patient|member|employee|versicherung|assurance|seguro|assicura")
_CURRENCY_BEFORE = re.compile(r"(?:[$€£¥₹]|\b(?:eur|usd|gbp|chf|jpy|inr|brl|r\$|rs\.?))\s?$")
_UNIT_AFTER = re.compile(
    r"\s?(?:[$€£¥₹%‰]|(?:eur|usd|gbp|chf|euros?|dollars?|pounds?|yen|reais|rupees?|km|kg|mb|gb|bytes?|"
    r"people|users|habitantes|personas|einwohner|habitants|abitanti|inwoners)\b)")
_PHONE_WINDOW = 32  # characters before a candidate read for context words
_PHONE_PARSE_CAP = 256  # libphonenumber parses per text (each 50-100 µs); past it, see _phone_spans


@functools.cache
def _region_shape(region: str) -> tuple[str | None, frozenset[int]] | None:
    """(national prefix, possible national number lengths) from libphonenumber's metadata."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.general_desc is None:
        return None
    return meta.national_prefix, frozenset(meta.general_desc.possible_length or ())


# Where numbers are commonly written without the trunk prefix, as the national
# significant number: NANP's 415 555 2671, Brazil's 11 91234-5678, India's and
# China's mobiles, and countries with no trunk prefix at all.
_NO_TRUNK_WRITING = frozenset({"US", "CA", "BR", "IN", "CN", "MX"})


# Verdicts remembered across texts: the output filter scans a sliding window,
# so the same number is asked about several times as an answer streams.
_PHONE_VERDICTS: dict[tuple[str, str | None, tuple[int, ...], bool], bool] = {}
_PHONE_VERDICTS_MAX = 8192


class _PhoneCheck:
    """libphonenumber, asked at most _PHONE_PARSE_CAP times for one text."""

    def __init__(self) -> None:
        self.left = _PHONE_PARSE_CAP

    def ok(self, number: str, region: str | None, groups: tuple[int, ...], trusted: bool = False) -> bool:
        """Valid in the region's metadata, or possible and either written the
        way the region formats it or `trusted` (called a phone number, or
        written +CC and grouped): Ofcom's drama numbers like 07700 900123 are
        reserved, so not "valid", yet they are how UK numbers look."""
        key = (number, region, groups, trusted)
        if key in _PHONE_VERDICTS:
            return _PHONE_VERDICTS[key]
        self.left -= 1
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            result = False
        else:
            result = phonenumbers.is_valid_number(parsed)
            if not result and phonenumbers.is_possible_number(parsed):
                style = PhoneNumberFormat.INTERNATIONAL if region is None else PhoneNumberFormat.NATIONAL
                written = tuple(len(g) for g in _DIGITS.findall(phonenumbers.format_number(parsed, style)))
                result = trusted or (written[-len(groups):] == groups[-len(written):] and len(groups) > 1)
        if len(_PHONE_VERDICTS) >= _PHONE_VERDICTS_MAX:
            _PHONE_VERDICTS.clear()
        _PHONE_VERDICTS[key] = result
        return result


def _phone_spans(text: Text) -> Iterator[Span]:
    """Phone numbers: with +CC or 00CC, any country libphonenumber knows;
    national ones in the tenant's region, the language's, then common ones.
    Past _PHONE_PARSE_CAP parses, a candidate of an unmistakable shape (+CC,
    trunk "0" grouped, NANP, Brazil) is taken without asking: the detector
    fails closed, and its cost stays bounded."""
    norm, check = text.norm, _PhoneCheck()
    for start, end in _matches(_PHONE_RUN, text):
        if end - start > 32:
            continue  # longer than any number written with its punctuation: a table, not a phone
        before, after = _at(norm, start - 1), _at(norm, end)
        if _is_word(before) or before in "+@#=&" or _is_word(after) or after in "%-":
            continue
        if before in ".-/" and _at(norm, start - 2).isdigit():
            continue  # the tail of a longer numeric expression
        raw = norm[start:end]
        if (_DATE_SHAPE.fullmatch(raw) or _DATE_INSIDE.search(raw) or _QUAD_SHAPE.fullmatch(raw)
                or _SSN_SHAPE.fullmatch(raw)):
            continue
        window = norm[max(0, start - _PHONE_WINDOW):start].lower()
        if _CURRENCY_BEFORE.search(window[-6:]) or _UNIT_AFTER.match(norm[end:end + 12].lower()):
            continue  # 912 345 678 € is an amount
        named = bool(_PHONE_WORDS.search(window))
        if not named and _NOT_PHONE_WORDS.search(window[-24:]):
            continue  # "order 0123 456789"
        if _phone_ok(text, raw, named, check):
            yield start, end


def _phone_ok(text: Text, raw: str, named: bool, check: _PhoneCheck) -> bool:
    digits = _NON_DIGIT.sub("", raw)
    groups = tuple(len(g) for g in _DIGITS.findall(raw))
    grouped = len(groups) > 1
    # Groups of two digits or more, after a one-digit trunk or country code: "(0 30) 12 34 56", "8 (495) 123-45-67".
    neat = min(groups[1:] if len(groups) > 2 and groups[0] == 1 else groups) >= 2
    if raw.startswith(("+", "(+")):
        # International: the country code says where.
        trusted = named or (grouped and min(groups[1:]) >= 2)
        if not 8 <= len(digits) <= 15:
            return False
        return check.ok("+" + digits, None, groups, trusted) if check.left > 0 else True
    # 00 is the international prefix of most of the world, 011 that of the US and Canada;
    # a number that does not read so may still be national (Delhi's area code is 011).
    exit_code = 2 if digits.startswith("00") and digits[2] != "0" else 3 if _EXIT_011.match(raw) else 0
    if exit_code and 8 <= len(digits) - exit_code <= 15 and (grouped or named):
        rest = groups[1:] if groups[0] == exit_code else groups
        if check.left <= 0 or check.ok("+" + digits[exit_code:], None, rest, named):
            return True
    if digits.startswith("00"):
        return False  # no national number starts with the international prefix
    if not 7 <= len(digits) <= 13:
        return False
    if digits[0] == "0":
        # A trunk prefix: national, of a country that dials 0 first (or Italy, which keeps it).
        if not (grouped or named) or not neat or (len(digits) < 9 and not named):
            # 0-306-40615-2 (an ISBN), an unpunctuated number nobody called a phone, or a short code
            # like 0815-4711 that German and Italian metadata accept (nearly all real ones have 9+ digits)
            return False
        if check.left <= 0:
            return True
        candidates = locale.candidate_regions(text.region, text.language)
        return any(_national_ok(check, digits, region, groups, named) for region in candidates
                   if _region_shape(region) and _region_shape(region)[0] in ("0", None))  # type: ignore[index]  # the shape is checked truthy first
    # No trunk prefix: the shapes everyone recognises, else what the hints say.
    nanp, br = _NANP_SHAPE.fullmatch(raw), _BR_SHAPE.fullmatch(raw)
    if check.left <= 0:
        return bool(nanp or br)
    regions: list[str] = (["US"] if nanp else []) + (["BR"] if br else [])
    # A one-digit first group can only be a trunk prefix written apart (Russia's 8 (495) ...);
    # "1 234 567 minutes" is a count, called so or not.
    lead = digits[0] if groups[0] == 1 else None
    if neat and (grouped or named):
        hinted = locale.hinted_regions(text.region, text.language)
        if named:
            hinted += ("ES", "IT", "PT", "IN", "CN", "MX", "US", "BR")
        for region in hinted:
            shape = _region_shape(region)
            if shape and (shape[0] == lead if lead else
                          shape[0] is None or shape[0] == digits[0] or region in _NO_TRUNK_WRITING):
                regions.append(region)
    return any(_national_ok(check, digits, region, groups, named) for region in dict.fromkeys(regions))


def _national_ok(check: _PhoneCheck, digits: str, region: str, groups: tuple[int, ...], named: bool) -> bool:
    prefix, lengths = _region_shape(region)  # type: ignore[misc]  # callers check the region has a shape
    national = digits[len(prefix):] if prefix and digits.startswith(prefix) else digits
    if lengths and len(national) not in lengths and len(digits) not in lengths:
        return False  # cannot be a number there: no need to ask
    return check.left > 0 and check.ok(digits, region, groups, named)


class Registry(dict[str, T]):
    """What policy rules refer to by name (detectors, classifiers): one name, one thing."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, item: T) -> T:
        name = item.name  # type: ignore[attr-defined]  # every registered item has a name
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = item
        return item


# One RE2 set pass says which built-in detectors can match at all. Each
# pattern is looser than its detector's (a necessary condition), so a
# detector it rules out has nothing to find.
_SEEDS: dict[str, str] = {
    "email": r"@|\\u0040|\\x40|&#0*64;|&#[xX]0*40;|&commat;|%40|[\[({<][ \t]{0,2}(?i:at|@|dot)[ \t]{0,2}[\])}>]"
             r"| AT | At | (?i:dot) ",
    "phone": r"[0-9](?:(?:[ .\-/]| ?[/\-] ?|\) ?| ?\()?[0-9]){6}",
    "payment_card": r"[0-9](?:[ .\-]?[0-9]){12}",
    "us_ssn": r"[0-9]{3}[\- ][0-9]{2}[\- ][0-9]{4}|(?i:ssn|social[ \-]security|soc\.? ?sec)",
    "iban": r"[A-Za-z]{2}[0-9]{2}[ \-]?[A-Za-z0-9]{4}[ \-]?[A-Za-z0-9]{4}",
    "ip_address": r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]|:[0-9A-Fa-f]{0,4}:",
    "date_of_birth": rf"(?i:{_BORN}|{_BIRTH_DATE})|[0-9]日[ \t]*生",
}
_SEED_NAMES = tuple(_SEEDS)


def _seed_set() -> re2.Set:
    options = re2.Options()
    options.max_mem = 64 << 20
    seeds = re2.Set.SearchSet(options)
    for pattern in _SEEDS.values():
        seeds.Add(pattern.encode())
    seeds.Compile()
    return seeds


_SEED_SET = _seed_set()


def _seen(name: str) -> Callable[[Text], bool]:
    def prefilter(text: Text) -> bool:
        if text._seen is None:
            text._seen = frozenset(_SEED_NAMES[i] for i in _SEED_SET.Match(text.utf8) or ())
        return name in text._seen
    return prefilter


REGISTRY: Registry[Detector] = Registry("detector")
register = REGISTRY.register  # makes a detector available to policy rules by its name


for _detector in (
    Detector("email", _email_spans, _seen("email"), needs_text=True),
    Detector("phone", _phone_spans, _seen("phone"), needs_text=True),
    Detector("payment_card", _card_spans, _seen("payment_card"), needs_text=True),
    Detector("us_ssn", _ssn_spans, _seen("us_ssn"), needs_text=True),
    Detector("iban", _iban_spans, _seen("iban"), needs_text=True),
    Detector("ip_address", _ip_spans, _seen("ip_address"), needs_text=True),
    Detector("date_of_birth", _dob_spans, _seen("date_of_birth"), needs_text=True),
    # Credentials: gitleaks' maintained rule set and Sluice's own (secrets.py).
    Detector("secret", lambda text: ((start, end) for start, end, _ in secrets.spans(text)),
             lambda text: secrets.may_contain(text.lower)),
):
    register(_detector)


# --- redaction -------------------------------------------------------------------

class Placeholders:
    """Typed placeholders, the same for the same value within one request:
    the second mention of a@b.c is [EMAIL_1] again, another address [EMAIL_2]."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def label(self, detector: str, value: str) -> str:
        key = (detector, _canonical(value))
        if key not in self._labels:
            self._counts[detector] = self._counts.get(detector, 0) + 1
            self._labels[key] = f"[{detector.upper()}_{self._counts[detector]}]"
        return self._labels[key]


def _canonical(value: str) -> str:
    norm = _fold(value)[0]
    return re.sub(r"[\s-]", "", norm).lower()


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping findings in text order; of overlapping ones the longest wins."""
    chosen: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, -(f.end - f.start))):
        if chosen and f.start < chosen[-1].end:
            if f.end - f.start > chosen[-1].end - chosen[-1].start:
                chosen[-1] = f
            continue
        chosen.append(f)
    return chosen


def redact(text: str, findings: Iterable[Finding], placeholders: Placeholders) -> str:
    out, last = [], 0
    for f in merge(findings):
        out.append(text[last:f.start])
        out.append(placeholders.label(f.detector, f.value))
        last = f.end
    out.append(text[last:])
    return "".join(out)


def detect(text: str | Text, names: Iterable[str] | None = None, *, region: str | None = None) -> list[Finding]:
    """Findings of the named detectors (all when None), merged. The text is
    normalised once for all of them; `region` is the tenant's (see Text)."""
    if isinstance(text, str):
        text = Text(text, region=region)
    detectors = REGISTRY.values() if names is None else [REGISTRY[n] for n in names]
    return merge(f for d in detectors for f in d.find(text))
