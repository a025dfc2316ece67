"""Language and region hints for the locale-aware detectors.

A phone number written without a country code ("030 12345678") means
something only in some country. The detectors ask, in order: the tenant's
region (ISO 3166-1 alpha-2, set by the engine on the Text), the regions
where the text's language is spoken, then a default set of common regions.

The language is guessed cheaply from a bounded sample: the script for
scripts that name their language (kana, hangul, Devanagari ...), otherwise
counts of common stop-words. It is a hint, not an identification: None
when the sample says too little.
"""

from __future__ import annotations

import re
from collections import Counter

# Regions where each language is the usual one, most populous first (CLDR
# territory data, rounded to the regions a gateway's tenants are likely in).
LANGUAGE_REGIONS: dict[str, tuple[str, ...]] = {
    "en": ("US", "GB", "IE", "AU", "CA", "IN", "NZ", "ZA", "SG"),
    "de": ("DE", "AT", "CH", "LU", "LI"),
    "fr": ("FR", "BE", "CH", "CA", "LU", "MA", "SN"),
    "es": ("ES", "MX", "AR", "CO", "CL", "PE", "US"),
    "it": ("IT", "CH", "SM"),
    "pt": ("BR", "PT", "AO", "MZ"),
    "nl": ("NL", "BE"),
    "ja": ("JP",),
    "zh": ("CN", "TW", "HK", "SG"),
    "ko": ("KR",),
    "ru": ("RU", "BY", "KZ"),
    "uk": ("UA",),
    "pl": ("PL",),
    "sv": ("SE", "FI"),
    "da": ("DK",),
    "no": ("NO",),
    "fi": ("FI",),
    "tr": ("TR",),
    "el": ("GR", "CY"),
    "he": ("IL",),
    "ar": ("SA", "AE", "EG", "MA"),
    "hi": ("IN",),
    "th": ("TH",),
}

# Tried after the hinted regions: where most tenants' users write from.
DEFAULT_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN", "BR", "ES", "IT", "NL", "JP", "AU", "CA",
                                    "CH", "AT", "BE", "IE", "MX", "CN")

# Scripts that name their language; kana before Han, since Japanese uses both.
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("zh", re.compile(r"[\u4e00-\u9fff]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
)
# Frequent function words; a word shared by several languages counts for each, split.
_STOPWORDS: dict[str, tuple[str, ...]] = {}
for _lang, _words in {
    "en": "the and is are was were of to with you this that please my your for from have call me our",
    "de": "der die das und ist nicht ich mit sie ein eine bitte mein meine oder auf wir den dem sind unter uns",
    "fr": "le la les et est une des pour vous avec mon ma je sur au du nous pas qui dans appelez",
    "es": "el la los las y es una por para con mi usted que del al su llame llamar nuestro",
    "it": "il la gli e è una per con mio sono che della del non chiamare al nostro",
    "pt": "o a os as e é uma para com meu você não que do da em nosso ligue",
    "nl": "de het een en is van voor met mijn niet op ik u bel ons",
    "sv": "och är att det som för med inte jag på",
    "pl": "i w nie na się jest że do to",
    "tr": "ve bir bu için ile da de değil",
}.items():
    for _word in _words.split():
        _STOPWORDS[_word] = (*_STOPWORDS.get(_word, ()), _lang)
_WORD = re.compile(r"[^\W\d_]+")
_SAMPLE = 2048  # characters looked at; enough for a dozen stop-words


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's likely language, or None. Looks at the
    first 2 KB only, so the cost does not grow with the text."""
    sample = text[:_SAMPLE]
    if sample.isascii():
        script = None
    else:
        script = next((lang for lang, pattern in _SCRIPTS if pattern.search(sample)), None)
    if script is not None:
        return script
    scores: Counter[str] = Counter()
    for word in _WORD.findall(sample.lower()):
        langs = _STOPWORDS.get(word)
        if langs:
            for lang in langs:
                # A Counter of float weights: typeshed types a Counter's values as int.
                scores[lang] += 1 / len(langs)  # type: ignore[assignment]
    if not scores:
        return None
    (best, score), *rest = scores.most_common(2) + [("", 0.0)]
    # Two stop-words at least, and clearly ahead of the runner-up.
    return best if score >= 2 and score > 1.25 * rest[0][1] else None


def candidate_regions(region: str | None, language: str | None) -> tuple[str, ...]:
    """Regions to read a national number in, most likely first: the tenant's
    region, then those of the language, then DEFAULT_REGIONS; no repeats."""
    ordered = ([region.upper()] if region else []) + list(LANGUAGE_REGIONS.get(language or "", ()))
    return tuple(dict.fromkeys(ordered + list(DEFAULT_REGIONS)))


def hinted_regions(region: str | None, language: str | None) -> tuple[str, ...]:
    """The tenant's region and the language's regions only (no defaults)."""
    ordered = ([region.upper()] if region else []) + list(LANGUAGE_REGIONS.get(language or "", ()))
    return tuple(dict.fromkeys(ordered))
