"""PII and secret detectors, and typed redaction.

A detector finds spans in text; it knows nothing of rules, actions or
requests. Text is first normalised (zero-width characters dropped, NFKC, so
full-width digits become ASCII, and common Cyrillic/Greek look-alikes mapped
to Latin) so tricks do not hide a value; every span is reported in the
*original* text's offsets, so redaction replaces exactly what the client sent.

New detectors plug in with `register()`; the rule engine refers to them by name.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

import phonenumbers

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
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def is_invisible(ch: str) -> bool:
    # Unicode tag characters (U+E0000..E007F) hide text the reader cannot see.
    return ch in _INVISIBLE or "\U000e0000" <= ch <= "\U000e007f"


def normalize(text: str) -> tuple[str, list[int]]:
    """(normalised text, for each of its characters the index in `text`).
    ASCII runs are copied whole; only non-ASCII characters are looked at one
    by one, so a 1 MB prompt of mostly ASCII costs little more than a copy."""
    if text.isascii():
        return text, list(range(len(text)))
    out: list[str] = []
    origin: list[int] = []
    last = 0
    for run in _NON_ASCII_RUN.finditer(text):
        out.append(text[last:run.start()])
        origin.extend(range(last, run.start()))
        for i in range(run.start(), run.end()):
            ch = text[i]
            if is_invisible(ch):
                continue
            folded = unicodedata.normalize("NFKC", ch).translate(_LOOKALIKES)
            out.append(folded)
            origin.extend([i] * len(folded))
        last = run.end()
    out.append(text[last:])
    origin.extend(range(last, len(text)))
    return "".join(out), origin


class Text:
    """A text and its normalised form, made once and shared by every matcher."""

    __slots__ = ("original", "norm", "_origin", "_lower")

    def __init__(self, original: str) -> None:
        self.original = original
        self._lower: str | None = None
        if original.isascii():
            self.norm, self._origin = original, None  # offsets are the same
        else:
            self.norm, self._origin = normalize(original)

    @property
    def lower(self) -> str:
        """The normalised text in lower case, for cheap keyword pre-checks."""
        if self._lower is None:
            self._lower = self.norm.lower()
        return self._lower

    def finding(self, name: str, start: int, end: int) -> Finding:
        """A span of the normalised text as a finding in the original's offsets."""
        if self._origin is not None:
            start, end = self._origin[start], self._origin[end - 1] + 1
        return Finding(name, start, end, self.original[start:end])


# --- detectors -----------------------------------------------------------------

Finder = Callable[[str], Iterable[tuple[int, int]]]


@dataclass(frozen=True)
class Detector:
    name: str
    # Spans (start, end) in normalised text.
    find_spans: Finder
    # A cheap test that text without it cannot match; the output filter
    # scans a small window per chunk, where most chunks have no candidate.
    # It gets the Text, so lower-casing is done once for every matcher.
    prefilter: Callable[[Text], object] | None = None

    def find(self, text: str | Text) -> list[Finding]:
        if isinstance(text, str):
            text = Text(text)
        if self.prefilter is not None and not self.prefilter(text):
            return []
        return [text.finding(self.name, start, end) for start, end in self.find_spans(text.norm) if end > start]


def _regex(pattern: str, check: Callable[[re.Match[str]], bool] = lambda m: True) -> Finder:
    compiled = re.compile(pattern)
    return lambda text: ((m.start(), m.end()) for m in compiled.finditer(text) if check(m))


# Unicode letters allowed on both sides (RFC 6531 addresses are real ones).
# Matched outwards from each "@" rather than tried at every character.
_EMAIL_LOCAL = re.compile(r"[^\W_][\w.%+-]{0,63}\Z")
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])")
_EMAIL_BEFORE = re.compile(r"[\w.+-]")


def _email_spans(text: str) -> Iterable[tuple[int, int]]:
    at = text.find("@")
    while at >= 0:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if local and domain and not (local.start() and _EMAIL_BEFORE.match(text, local.start() - 1)):
            yield local.start(), domain.end()
        at = text.find("@", at + 1)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# How cards are printed when grouped: 4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4.
_CARD_GROUPS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}


def _card_ok(m: re.Match[str]) -> bool:
    groups = re.split(r"[ -]", m.group())
    digits = "".join(groups)
    if len(groups) > 1 and tuple(map(len, groups)) not in _CARD_GROUPS:
        return False  # e.g. the tail of an IBAN, 3704 0044 0532 0130 01
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _ssn_ok(m: re.Match[str]) -> bool:
    area, group, serial = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


# Lengths by country for the IBANs seen most; others need 15..34.
_IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21, "AT": 20,
                 "IE": 22, "PL": 28, "PT": 25, "SE": 24, "NO": 15, "DK": 18, "FI": 18, "LU": 20}


# Countries that issue IBANs; RF (creditor references) shares the mod-97 check but is not one.
_IBAN_COUNTRIES = frozenset((
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI GL GR GT HR HU "
    "IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI NL NO OM PK PL PS PT QA RO RS RU "
    "SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE").split())


def iban_ok(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if iban[:2] not in _IBAN_COUNTRIES:
        return False
    expected = _IBAN_LENGTHS.get(iban[:2])
    if (expected and len(iban) != expected) or not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_VERSION_BEFORE = re.compile(r"(?i)(?:version|release|build|\bv)\s*$")


_IPV4_CANDIDATE = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
# At least two colons, so hex words like "face" are not tried.
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


def _ip_spans(text: str) -> Iterable[tuple[int, int]]:
    candidates = list(_IPV4_CANDIDATE.finditer(text)) if "." in text else []
    if text.count(":") > 1:
        candidates += _IPV6_CANDIDATE.finditer(text)
    for m in candidates:
        candidate = m.group()
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            continue  # "release 3.10.12.1" is a version number
        yield m.start(), m.end()


_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december|"
           "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_DATE = (rf"(?P<iso>\d{{4}}-\d{{2}}-\d{{2}})|(?P<num>\d{{1,2}}[/.]\d{{1,2}}[/.]\d{{4}})"
         rf"|(?P<dmy>\d{{1,2}} (?:{_MONTHS})\.? \d{{4}})|(?P<mdy>(?:{_MONTHS})\.? \d{{1,2}},? \d{{4}})")
_DOB_CONTEXT = r"(?:born(?: on)?|date of birth|d\.?o\.?b\.?|birthday|birth date|geboren(?: am)?|né(?:e)? le|fecha de nacimiento)"
_DOB_WORDS = ("born", "birth", "dob", "d.o.b", "geboren", "né", "nacimiento")
_DOB = re.compile(rf"{_DOB_CONTEXT}\s*[:\-]?\s*(?:is\s+|was\s+)?(?P<date>{_DATE})", re.IGNORECASE)


def _plausible_birth_date(text: str) -> bool:
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    year = next((n for n in numbers if n > 999), 0)
    return 1900 <= year <= date.today().year


def _dob_spans(text: str) -> Iterable[tuple[int, int]]:
    for m in _DOB.finditer(text):
        if _plausible_birth_date(m.group("date")):
            yield m.start("date"), m.end("date")


_US_WRITTEN = re.compile(r"(?:1[-. ]?)?(?:\(\d{3}\)\s?|\d{3}[-. ])\d{3}[-. ]\d{4}")


# Runs of digits and phone punctuation with 7+ digits: the only strings
# libphonenumber (pure Python, tens of microseconds a parse) is asked about.
_PHONE_CANDIDATE = re.compile(r"(?<![\w+])\+?\(?\d(?:[ \t().\-/]{0,3}\d){6,}(?!\w)")


def _phone_spans(text: str) -> Iterable[tuple[int, int]]:
    for candidate in _PHONE_CANDIDATE.finditer(text):
        raw = candidate.group()
        # "US" only decides numbers written without a country code, and only
        # the way US numbers are written: an invoice number like 2024-000123
        # is a valid US number to the metadata, not to a reader. +CC numbers
        # of every country are validated by libphonenumber's metadata.
        if not raw.startswith("+") and not _US_WRITTEN.fullmatch(raw):
            continue
        try:
            number = phonenumbers.parse(raw, "US")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            yield candidate.start(), candidate.end()


_SECRET_PATTERNS = [
    # A block without its END line (pasted in half, or still streaming) is a key to its end too.
    r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"
    r"(?:[\s\S]+?-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----|[\s\S]*\Z)",
    r"\bsk-ant-[A-Za-z0-9_-]{20,}",  # Anthropic
    r"\bsk-sluice-[a-z0-9]+-[A-Za-z0-9]{16,}",  # Sluice's own keys
    r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}",  # OpenAI-style
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
]
_SECRET = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS))


class Registry(dict[str, T]):
    """What policy rules refer to by name (detectors, classifiers): one name, one thing."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, item: T) -> T:
        name = item.name  # type: ignore[attr-defined]
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = item
        return item


def _search(pattern: str) -> Callable[[Text], object]:
    compiled = re.compile(pattern)
    return lambda text: compiled.search(text.norm)


REGISTRY: Registry[Detector] = Registry("detector")
register = REGISTRY.register  # makes a detector available to policy rules by its name


for _detector in (
    Detector("email", _email_spans, lambda t: "@" in t.norm),
    Detector("phone", _phone_spans, _search(r"\d(?:\D{0,3}\d){6}")),
    Detector("payment_card", _regex(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\d-])", _card_ok),
             _search(r"\d(?:[ -]?\d){12}")),
    Detector("us_ssn", _regex(r"(?<![\d-])(\d{3})[- ](\d{2})[- ](\d{4})(?![\d-])", _ssn_ok),
             _search(r"\d{3}[- ]\d{2}[- ]\d{4}")),
    Detector("iban", _regex(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])",
                            lambda m: iban_ok(m.group())), _search(r"[A-Z]{2}\d{2}")),
    Detector("ip_address", _ip_spans, lambda t: "." in t.norm or t.norm.count(":") > 1),
    Detector("date_of_birth", _dob_spans, lambda t: any(w in t.lower for w in _DOB_WORDS)),
    Detector("secret", lambda text: ((m.start(), m.end()) for m in _SECRET.finditer(text)),
             _search(r"-----BEGIN|sk-|AKIA|ASIA|gh[pousr]_|xox[abposr]-|AIza|eyJ")),
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
    norm, _ = normalize(value)
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


def detect(text: str, names: Iterable[str] | None = None) -> list[Finding]:
    """Findings of the named detectors (all when None), merged."""
    detectors = REGISTRY.values() if names is None else [REGISTRY[n] for n in names]
    return merge(f for d in detectors for f in d.find(text))
