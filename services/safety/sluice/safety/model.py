"""The learned prompt-injection classifier: `injection_model`, beside the heuristics.

A binary logistic regression (scikit-learn, fitted offline by `sluice safety
train` on the project's own labelled corpus, `data/injection/*.jsonl`) over
hashed character 3-, 4- and 5-grams of the normalised, lower-cased text
(2**18 buckets; n-grams carry across languages, inflections and spellings
that a word list does not). A text's vector is the n-gram counts divided by
the square root of their total; its score is the sigmoid of the dot product
with the weights plus the intercept, as scikit-learn's `predict_proba`
gives it. Hashing is vectorised with numpy, so a character costs a few
nanoseconds.

Long texts are scored in windows of WINDOW_CHARS characters every
STRIDE_CHARS (an attack in the middle of a long pasted page is not diluted
by the page), and the score is the best window's; the finding is that
window. A window's sum is a difference of two cumulative sums, so the cost
is linear in the text.

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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sluice.safety.detectors import Finding, Text

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "injection"
ARTIFACT = DATA / "injection_model"
NAME = "injection_model"

WINDOW_CHARS = 1200
STRIDE_CHARS = 600
NGRAMS = (3, 4, 5)
BUCKET_BITS = 18  # 262,144 hashed features
HELD_OUT = 0.25

_SPACE = re.compile(r"\s+")
# One odd 64-bit multiplier per n, so a 3-gram and a 4-gram never share a hash by construction.
_SALT = {n: np.uint64(0x9E3779B97F4A7C15 + 2 * n) for n in NGRAMS}
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def prepared(text: Text) -> str:
    """What the model reads: the normalised text lower-cased, runs of white
    space as one space (layout is not a signal, and it keeps n-grams of
    words that a line break separates)."""
    return _SPACE.sub(" ", text.lower)


def buckets(prepared_text: str) -> np.ndarray:
    """Hashed character n-grams (n in NGRAMS) of a prepared text: shape
    (len(NGRAMS), len(text)), bucket ids in [0, 2**BUCKET_BITS), -1 where an
    n-gram would run past the end. Vectorised: about 10 ns a character."""
    codes = np.frombuffer(prepared_text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n_chars = len(codes)
    out = np.full((len(NGRAMS), n_chars), -1, dtype=np.int64)
    with np.errstate(over="ignore"):
        for row, n in enumerate(NGRAMS):
            if n_chars < n:
                continue
            h = np.zeros(n_chars - n + 1, dtype=np.uint64)
            for k in range(n):
                h = (h ^ codes[k:n_chars - n + 1 + k]) * _MIX
            h = (h * _SALT[n]) >> np.uint64(64 - BUCKET_BITS)
            out[row, :n_chars - n + 1] = h.astype(np.int64)
    return out


def features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(bucket ids, counts) of a whole text: training's view of one case."""
    ids = buckets(prepared(Text(text)))
    ids = ids[ids >= 0]
    return np.unique(ids, return_counts=True)


class InjectionModel:
    """Loaded weights (module doc). `classify` has the heuristics' shape:
    (score 0..1, [the best window's finding])."""

    def __init__(self, weights: np.ndarray, intercept: float, card: dict[str, Any]) -> None:
        if weights.shape != (1 << BUCKET_BITS,):
            raise ValueError(f"injection model weights have shape {weights.shape}, want ({1 << BUCKET_BITS},)")
        if not (np.isfinite(weights).all() and math.isfinite(intercept)):
            raise ValueError("injection model weights are not all finite numbers")
        self._weights = np.asarray(weights, dtype=np.float64)
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
                weights, intercept = data["weights"], float(data["intercept"])
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - zip, npy and JSON errors of a damaged file all mean one thing
            raise ValueError(f"injection model {stem} cannot be read: {type(exc).__name__}: {exc}") from None
        if not isinstance(card, dict) or card.get("features") != _feature_card():
            raise ValueError(f"injection model {stem} was trained with other features (run `sluice safety train`)")
        return cls(weights, intercept, card)

    def score_features(self, ids: np.ndarray, counts: np.ndarray) -> float:
        """P(attack) of one whole text's features (as training saw it)."""
        total = counts.sum()
        if not total:
            return _sigmoid(self._intercept)
        return _sigmoid(float((self._weights[ids] * counts).sum() / math.sqrt(total)) + self._intercept)

    def classify(self, text: str | Text) -> tuple[float, list[Finding]]:
        """(the best window's P(attack), [that window as a finding]).
        Windows of WINDOW_CHARS characters every STRIDE_CHARS, the last one
        ending at the text's end; linear in the text (cumulative sums)."""
        if isinstance(text, str):
            text = Text(text)
        prepared_text = prepared(text)
        n = len(prepared_text)
        if not prepared_text.strip():
            return 0.0, []
        ids = buckets(prepared_text)
        valid = ids >= 0
        per_char = np.where(valid, self._weights[np.where(valid, ids, 0)], 0.0).sum(axis=0)
        sizes = valid.sum(axis=0).astype(np.float64)
        if n <= WINDOW_CHARS:
            starts = np.array([0])
        else:
            starts = np.unique(np.append(np.arange(0, n - WINDOW_CHARS, STRIDE_CHARS), n - WINDOW_CHARS))
        ends = np.minimum(starts + WINDOW_CHARS, n)
        csum = np.concatenate(([0.0], np.cumsum(per_char)))
        csize = np.concatenate(([0.0], np.cumsum(sizes)))
        z = (csum[ends] - csum[starts]) / np.sqrt(np.maximum(csize[ends] - csize[starts], 1.0)) + self._intercept
        k = int(np.argmax(z))
        start, end = int(starts[k]), int(ends[k])
        if n != len(text.norm):  # white space folded or a length-changing lower(): the whole text
            start, end = 0, len(text.norm)
        return _sigmoid(float(z[k])), [text.finding(NAME, start, end)]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0


def _feature_card() -> dict[str, Any]:
    return {"text": "normalised (NFKC, look-alikes folded, invisible dropped), lower-cased, white space folded",
            "char_ngrams": list(NGRAMS), "bucket_bits": BUCKET_BITS, "hash": "xor-multiply 0xBF58476D1CE4E5B9, salted by n",
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


def train(cases: list[Case], corpus_sha256: str, version: str, c: float = 32.0) -> InjectionModel:
    """Fits the model on `cases`. Raises ImportError without the train extra."""
    import sklearn
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    rows, cols, values = [], [], []
    for r, case in enumerate(cases):
        ids, counts = features(case.text)
        total = math.sqrt(counts.sum() or 1)
        rows.append(np.full(len(ids), r))
        cols.append(ids)
        values.append(counts / total)
    x = csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(len(cases), 1 << BUCKET_BITS), dtype=np.float64)
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit(x, [case.attack for case in cases])
    card = {"version": version, "corpus_sha256": corpus_sha256, "scikit_learn": sklearn.__version__,
            "examples": len(cases), "features": _feature_card(),
            "model": f"scikit-learn LogisticRegression(C={c}, class_weight=balanced), counts / sqrt(total)"}
    return InjectionModel(model.coef_[0].astype(np.float32), float(model.intercept_[0]), card)


def save(model: InjectionModel, stem: Path = ARTIFACT) -> None:
    """Writes `<stem>.npz` (float16 weights, compressed: a score moves by
    under 0.1%) and `<stem>.json`."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, weights=model._weights.astype(np.float16), intercept=np.float32(model._intercept))
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

