"""The learned prompt-injection classifier: `injection_model`, beside the heuristics.

A binary logistic regression (scikit-learn, fitted offline by `sluice safety
train` on the project's own labelled corpus, `data/injection/*.jsonl`) over
hashed character 1- to 5-grams within words (scikit-learn's "char_wb") and
word 1- to 3-grams (2**19 buckets) of the normalised, lower-cased text:
character n-grams carry across inflections, spellings and languages where a
word list does not, word n-grams keep phrases. Each
n-gram present weighs its idf times the square root of how well it tells
the classes apart (its naive-Bayes log-count ratio), the vector is
L2-normalised, and the score is the sigmoid of its dot product with the
weights plus the intercept, as scikit-learn's `predict_proba` gives it.
Hashing is vectorised with numpy, a few nanoseconds a character.

Long texts are scored in windows of WINDOW_CHARS characters every
STRIDE_CHARS (an attack in the middle of a long pasted page is not diluted
by the page, and a passage of up to STRIDE_CHARS lies whole in a window);
the score is the best window's, and the finding is that window. The cost is
linear in the text (see `InjectionModel.classify`).

Serving never imports scikit-learn. The artifact is `data/injection_model.npz`
(float16 weights, compressed) with its card `data/injection_model.json`
(version, the corpus's SHA-256, scikit-learn's version, the held-out scores).
Training and scoring use different parts of the corpus: `split()` puts a
fixed quarter of each (label, kind) group in the held-out part, chosen by
the SHA-256 of each case's id, and the floors CI asserts are measured there.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sluice.safety.detectors import Finding, Text

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "injection"
ARTIFACT = DATA / "injection_model"
NAME = "injection_model"

STRIDE_CHARS = 1000
WINDOW_CHARS = 2 * STRIDE_CHARS
NGRAMS = (1, 2, 3, 4, 5)
WORD_NGRAMS = (1, 2, 3)
BUCKET_BITS = 19  # 524,288 hashed character n-grams
WORD_BUCKET_BITS = 18  # then 262,144 hashed word n-grams
FEATURES = (1 << BUCKET_BITS) + (1 << WORD_BUCKET_BITS)
# Word n-grams are far fewer than character n-grams: their values are scaled up
# so they keep a voice after the L2 norm (as two separately normalised blocks would).
WORD_WEIGHT = 2.0
HELD_OUT = 0.25

# One odd 64-bit multiplier per n, so n-grams of different lengths do not
# share a hash by construction.
_SALT = {n: np.uint64(0x9E3779B97F4A7C15 + 2 * n) for n in (*NGRAMS, *(10 + n for n in WORD_NGRAMS))}
_BASE = np.uint64(0x100000001B3)  # odd, so it has an inverse modulo 2**64
_BASE_INVERSE = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_SPACE_CODE = ord(" ")


def prepared(text: Text) -> str:
    """What the model reads: the normalised text lower-cased, each run of
    white space one space, a space at both ends (layout is not a signal;
    the ends mark the first and last word's edges)."""
    return " " + " ".join(text.lower.split()) + " "


def buckets(prepared_text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashed features of a prepared text, each at the character it starts
    at: character n-grams within words (NGRAMS; an n-gram may begin or end
    with a space but holds none inside: scikit-learn's "char_wb" n-grams,
    which carry across inflections, spellings and languages), then word
    uni-, bi- and trigrams (WORD_NGRAMS). Returns (characters' bucket ids,
    shape (len(NGRAMS), len(text)), -1 where none starts; the words'
    positions; their bucket ids, after the characters' 2**BUCKET_BITS).
    Vectorised: tens of nanoseconds a character."""
    codes = np.frombuffer(prepared_text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n_chars = len(codes)
    is_space = codes == _SPACE_CODE
    spaces = np.concatenate(([0], np.cumsum(is_space)))
    wide = codes.astype(np.uint64)
    out = np.full((len(NGRAMS), n_chars), -1, dtype=np.int64)
    word_at: list[np.ndarray] = []
    word_ids: list[np.ndarray] = []
    shift = np.uint64(64 - BUCKET_BITS)
    with np.errstate(over="ignore"):
        running = np.zeros(n_chars, dtype=np.uint64)  # the hash of the (n-1)-gram at each start
        for row, n in enumerate(NGRAMS):
            if n_chars < n:
                continue
            count = n_chars - n + 1
            running = (running[:count] ^ wide[n - 1:count + n - 1]) * _MIX
            ids = ((running * _SALT[n]) >> shift).astype(np.int64)
            if n > 2:  # no space strictly inside
                inside = spaces[n - 1:count + n - 1] - spaces[1:count + 1]
                ids[inside > 0] = -1
            if n > 1:  # not a run of spaces only at the edges of two words
                ids[is_space[:count] & is_space[n - 1:count + n - 1]] = -1
            out[row, :count] = ids
        words, starts = _word_hashes(wide, is_space)
        for n in WORD_NGRAMS:
            if len(words) < n:
                continue
            h = words[:len(words) - n + 1].copy()
            for k in range(1, n):
                h = (h * _MIX) ^ words[k:len(words) - n + 1 + k]
            word_ids.append(((h * _SALT[10 + n]) >> np.uint64(64 - WORD_BUCKET_BITS)).astype(np.int64)
                            + (1 << BUCKET_BITS))
            word_at.append(starts[:len(words) - n + 1])
    empty = np.zeros(0, dtype=np.int64)
    return (out, np.concatenate(word_at) if word_at else empty, np.concatenate(word_ids) if word_ids else empty)


def _word_hashes(wide: np.ndarray, is_space: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a 64-bit hash of each word, where each starts): a polynomial hash
    modulo 2**64 from prefix sums, so no Python loop runs per word."""
    n_chars = len(wide)
    starts = np.flatnonzero(~is_space & np.concatenate(([True], is_space[:-1])))
    ends = np.flatnonzero(~is_space & np.concatenate((is_space[1:], [True]))) + 1
    if not len(starts):
        return np.zeros(0, dtype=np.uint64), starts
    # powers of the odd base and of its inverse modulo 2**64, position by position
    up = np.cumprod(np.concatenate(([np.uint64(1)], np.full(n_chars, _BASE, dtype=np.uint64))))
    down = np.cumprod(np.concatenate(([np.uint64(1)], np.full(n_chars, _BASE_INVERSE, dtype=np.uint64))))
    prefix = np.concatenate(([np.uint64(0)], np.cumsum((wide + np.uint64(1)) * down[:n_chars])))
    return (prefix[ends] - prefix[starts]) * up[starts], starts


def features(text: str) -> np.ndarray:
    """The bucket ids present in a whole text, each once: training's view of one case."""
    chars, _, words = buckets(prepared(Text(text)))
    return np.unique(np.concatenate((chars[chars >= 0], words)))


class InjectionModel:
    """Loaded weights (module doc). `classify` has the heuristics' shape:
    (score 0..1, [the best window's finding])."""

    def __init__(self, weights: np.ndarray, values: np.ndarray, intercept: float, card: dict[str, Any]) -> None:
        """`weights`: the regression's, per feature; `values`: what a feature
        present puts in the vector before the L2 norm (see `train`)."""
        width = FEATURES
        if weights.shape != (width,) or values.shape != (width,):
            raise ValueError(f"injection model weights and values have shapes {weights.shape}, {values.shape}, "
                             f"want ({width},)")
        if not (np.isfinite(weights).all() and np.isfinite(values).all() and math.isfinite(intercept)):
            raise ValueError("injection model weights are not all finite numbers")
        self._weights = np.asarray(weights, dtype=np.float64)
        self._values = np.asarray(values, dtype=np.float64)
        # Per occurrence: what it adds to the dot product, and to the squared norm.
        self._gain = self._weights * self._values
        self._mass = self._values ** 2
        self._intercept = float(intercept)
        self.card = card
        self.name = NAME
        self.version = str(card.get("version", ""))

    @classmethod
    def load(cls, stem: Path | str = ARTIFACT) -> InjectionModel:
        """The artifact at `<stem>.npz` + `<stem>.json`. Raises OSError when a
        file cannot be read, ValueError when they are not this model's."""
        stem = Path(stem)
        try:
            card = json.loads(stem.with_suffix(".json").read_text())
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
                weights, values, intercept = data["weights"], data["values"], float(data["intercept"])
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - zip, npy and JSON errors of a damaged file all mean one thing
            raise ValueError(f"injection model {stem} cannot be read: {type(exc).__name__}: {exc}") from None
        if not isinstance(card, dict) or card.get("features") != _feature_card():
            raise ValueError(f"injection model {stem} was trained with other features (run `sluice safety train`)")
        return cls(weights, values, intercept, card)

    def classify(self, text: str | Text) -> tuple[float, list[Finding]]:
        """(the best window's P(attack), [that window as a finding]).

        The text is cut in blocks of STRIDE_CHARS; window j is blocks j and
        j + 1, so any passage of up to STRIDE_CHARS lies whole in one. An
        n-gram counts once per window however often it repeats (a pasted
        log of one line a thousand times reads as that line once): block by
        block, the n-grams new to the block are summed, and again those not
        also in the block before, which is what the window adds to it: one
        sort of the (n-gram, block) pairs, so the cost is a few vector
        operations over the text."""
        if isinstance(text, str):
            text = Text(text)
        prepared_text = prepared(text)
        n = len(prepared_text)
        if n <= 2:
            return 0.0, []
        chars, word_at, words = buckets(prepared_text)
        blocks = max(1, -(-n // STRIDE_CHARS))
        # Each (feature, block) pair once: the block in the low bits, sorted,
        # the first of each run kept.
        shift = max(1, blocks.bit_length())
        block_of = np.repeat(np.arange(blocks, dtype=np.int64), STRIDE_CHARS)[:n]
        pairs = ((chars << shift) | block_of).ravel()
        pairs = np.sort(np.concatenate((pairs[pairs >= 0], (words << shift) | block_of[word_at])))
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
        feature, block = pairs >> shift, pairs & ((1 << shift) - 1)
        # ... and whether the block before has it too (a window adds only what it lacks).
        repeated = np.concatenate(([False], (feature[1:] == feature[:-1]) & (block[1:] == block[:-1] + 1)))
        fresh = ~repeated
        gain, mass = self._gain[feature], self._mass[feature]
        gain_all = np.bincount(block, weights=gain, minlength=blocks)  # n-grams of the block
        mass_all = np.bincount(block, weights=mass, minlength=blocks)
        gain_new = np.bincount(block[fresh], weights=gain[fresh], minlength=blocks)  # ... not in the block before
        mass_new = np.bincount(block[fresh], weights=mass[fresh], minlength=blocks)
        if blocks == 1:
            gains, masses = gain_all, mass_all
        else:
            gains, masses = gain_all[:-1] + gain_new[1:], mass_all[:-1] + mass_new[1:]
        z = np.where(masses > 0, gains / np.sqrt(np.maximum(masses, 1e-12)), 0.0) + self._intercept
        k = int(np.argmax(z))
        start, end = _in_norm(text, k * STRIDE_CHARS, min((k + 2) * STRIDE_CHARS, n), whole=blocks <= 2)
        return _sigmoid(float(z[k])), [text.finding(NAME, start, end)]

_WHITE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def _in_norm(text: Text, start: int, end: int, whole: bool = False) -> tuple[int, int]:
    """A span of `prepared(text)` as a span of `text.norm` (the prepared
    text folds runs of white space and adds a space at each end). `whole`:
    the span is all of the prepared text (one window), which is the text
    without the white space at its ends: no per-character work."""
    norm = text.norm
    if len(text.lower) != len(norm):  # a lower-casing that changed length: the whole text
        return 0, len(norm)
    if whole:
        lower = text.lower
        kept = lower.rstrip()
        return (len(lower) - len(lower.lstrip()), len(kept)) if kept else (0, len(norm))
    codes = np.frombuffer(text.lower.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    white = np.isin(codes, _WHITE)
    firsts = ~(white & np.concatenate(([True], white[:-1])))  # the first of each run, none at the start
    where = np.flatnonzero(firsts)
    if len(where) and white[where[-1]]:
        where = where[:-1]  # the trailing run
    if not len(where):
        return 0, len(norm)
    first = int(where[min(max(start - 1, 0), len(where) - 1)])
    last = int(where[min(max(end - 2, 0), len(where) - 1)]) + 1
    return first, max(last, first + 1)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0


def _feature_card() -> dict[str, Any]:
    return {"text": "normalised (NFKC, look-alikes folded, invisible dropped), lower-cased, white space folded",
            "char_wb_ngrams": list(NGRAMS), "word_ngrams": list(WORD_NGRAMS), "word_weight": WORD_WEIGHT,
            "word_bucket_bits": WORD_BUCKET_BITS, "bucket_bits": BUCKET_BITS, "hash": "xor-multiply 0xBF58476D1CE4E5B9, salted by n",
            "weighting": "presence x idf x sqrt(|NB log-count ratio|), L2",
            "window_chars": WINDOW_CHARS, "stride_chars": STRIDE_CHARS}


# --- the corpus, training and scores (training needs scikit-learn) ---------------------------

@dataclass(frozen=True, slots=True)
class Case:
    """One labelled corpus line."""

    id: str
    text: str
    attack: bool
    kind: str
    lang: str
    hard: bool


def read_corpus(folder: Path = CORPUS) -> tuple[list[Case], str]:
    """Every case of `folder/*.jsonl` and the SHA-256 over the files (name
    and bytes, in name order). Raises ValueError naming the file and line
    of a case that is not {id, text, label: attack|benign, kind, lang}."""
    digest = hashlib.sha256()
    cases: list[Case] = []
    seen: set[str] = set()
    for path in sorted(folder.glob("*.jsonl")):
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw)
        for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                case = Case(str(entry["id"]), str(entry["text"]), {"attack": True, "benign": False}[entry["label"]],
                            str(entry["kind"]), str(entry.get("lang", "")), bool(entry.get("hard", False)))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a corpus case ({type(exc).__name__}: {exc})") from None
            if case.id in seen:
                raise ValueError(f"{path}:{number}: id {case.id!r} is used twice")
            seen.add(case.id)
            cases.append(case)
    if not cases:
        raise ValueError(f"{folder}: no corpus cases (*.jsonl)")
    return cases, digest.hexdigest()


def split(cases: list[Case], held_out: float = HELD_OUT) -> tuple[list[Case], list[Case]]:
    """(train, held-out): in each (label, kind) group, the `held_out`
    fraction with the lowest SHA-256 of their ids is held out; the same
    split on every machine, and a case keeps its side when others are added."""
    groups: dict[tuple[bool, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.attack, case.kind), []).append(case)
    train: list[Case] = []
    test: list[Case] = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda c: hashlib.sha256(c.id.encode()).hexdigest())
        cut = max(1, round(len(group) * held_out))
        test += group[:cut]
        train += group[cut:]
    return train, test


def vectors(present: list[np.ndarray], weight: np.ndarray) -> Any:
    """Each case's features (`features()`) as a row of a sparse matrix: each
    n-gram present weighs `weight`, rows L2-normalised (what a window of
    `InjectionModel.classify` computes)."""
    from scipy.sparse import csr_matrix

    rows, cols, values = [], [], []
    for r, ids in enumerate(present):
        weights = weight[ids]
        norm = math.sqrt(float((weights ** 2).sum())) or 1.0
        rows.append(np.full(len(ids), r))
        cols.append(ids)
        values.append(weights / norm)
    return csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(len(present), FEATURES), dtype=np.float64)


def train(cases: list[Case], corpus_sha256: str, version: str, c: float = 16.0) -> InjectionModel:
    """Fits the model on `cases`. Each n-gram present weighs its smoothed
    idf (as scikit-learn's TfidfVectorizer computes it) times the square
    root of its naive-Bayes log-count ratio's size (Wang and Manning,
    "Baselines and Bigrams", ACL 2012: n-grams that tell the classes apart
    count for more), rows L2-normalised; then a class-balanced logistic
    regression. Raises ImportError without the train extra."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    document_frequency = np.zeros(FEATURES)
    in_attacks = np.ones(FEATURES)  # add-one smoothing
    in_benign = np.ones(FEATURES)
    present = [features(case.text) for case in cases]
    for case, ids in zip(cases, present, strict=True):
        document_frequency[ids] += 1
        (in_attacks if case.attack else in_benign)[ids] += 1
    idf = np.log((1 + len(cases)) / (1 + document_frequency)) + 1.0
    ratio = np.abs(np.log((in_attacks / in_attacks.sum()) / (in_benign / in_benign.sum())))
    weight = idf * np.sqrt(ratio)
    weight[document_frequency < 2] = 0.0  # seen once: noise, and it would make the artifact large
    weight[1 << BUCKET_BITS:] *= WORD_WEIGHT
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit(vectors(present, weight), [case.attack for case in cases])
    card = {"version": version, "corpus_sha256": corpus_sha256, "scikit_learn": sklearn.__version__,
            "examples": len(cases), "features": _feature_card(),
            "model": f"scikit-learn LogisticRegression(C={c}, class_weight=balanced) over presence weighted by "
                     "idf x sqrt(|NB log-count ratio|), L2-normalised"}
    return InjectionModel(model.coef_[0].astype(np.float32), weight.astype(np.float32),
                          float(model.intercept_[0]), card)


def save(model: InjectionModel, stem: Path = ARTIFACT) -> None:
    """Writes `<stem>.npz` (float16 weights, compressed: a score moves by
    under 0.1%) and `<stem>.json`."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, weights=model._weights.astype(np.float16), values=model._values.astype(np.float16),
                        intercept=np.float32(model._intercept))
    stem.with_suffix(".npz").write_bytes(buffer.getvalue())
    stem.with_suffix(".json").write_text(json.dumps(model.card, indent=2, ensure_ascii=False) + "\n")


def loaded() -> InjectionModel | None:
    """The shipped model, or None when its artifact is missing (a checkout
    before the first `sluice safety train`); rules naming it then fail
    validation with that reason."""
    global _LOADED
    if _LOADED is None:
        try:
            _LOADED = InjectionModel.load()
        except (OSError, ValueError):
            return None
    return _LOADED


_LOADED: InjectionModel | None = None

