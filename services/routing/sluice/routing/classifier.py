"""The task classifier: task type and complexity of a request, in process.

Two multinomial logistic regressions (scikit-learn, trained offline by
`sluice routing train` on the project's labelled corpus) over binary
features (`features.Features.tokens`), rows L2-normalised. Serving never
imports scikit-learn: the artifact is the vocabulary and the weights
(`data/classifier.npz`, float16 weights) with a JSON card (`data/classifier.json`:
version, the corpus's SHA-256, classes, held-out scores), and a prediction
is a sum of the weight rows of the tokens present, divided by the square
root of their count, plus the intercepts: the same number scikit-learn's
`decision_function` gives for that row.

Tasks are the 18 of issue 15; complexity is low, medium or high.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sluice.routing import features as feats
from sluice.wire.request import MessagesRequest

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus"
ARTIFACT = DATA / "classifier"

TASKS = ("classification", "sentiment", "extraction", "simple_qa", "translation", "rewriting", "summarisation",
         "code_review", "code_generation", "rag_answer", "agent_tool", "writing", "explanation", "creative",
         "chit_chat", "architecture_review", "complex_reasoning", "legal_analysis")
COMPLEXITIES = ("low", "medium", "high")
TIERS: tuple[Literal["fast", "balanced", "top"], ...] = ("fast", "balanced", "top")  # policy.Tier's values
_N_TASKS = len(TASKS)
# A token must occur in this many training prompts to get a weight.
MIN_DOCUMENT_FREQUENCY = 2


@dataclass(frozen=True, slots=True)
class Prediction:
    """task and complexity with the classifier's probability of each;
    `complexity_at_least` is P(complexity >= the predicted level)."""

    task: str
    task_p: float
    complexity: str
    complexity_p: float
    complexity_at_least: float


class TaskClassifier:
    """Loaded weights (module doc). `predict` takes the router's Features."""

    def __init__(self, vocabulary: Sequence[str], weights: np.ndarray, intercepts: np.ndarray,
                 card: dict[str, Any]) -> None:
        width = len(TASKS) + len(COMPLEXITIES)
        if weights.shape != (len(vocabulary), width) or np.shape(intercepts) != (width,):
            raise ValueError(f"classifier weights have shape {weights.shape} and intercepts {np.shape(intercepts)}, "
                             f"want ({len(vocabulary)}, {width}) and ({width},)")
        if not (np.isfinite(weights).all() and np.isfinite(intercepts).all()):
            raise ValueError("classifier weights are not all finite numbers")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("classifier vocabulary lists a token twice")
        self._index = {token: i for i, token in enumerate(vocabulary)}
        self._weights = np.ascontiguousarray(weights, dtype=np.float32)
        self._intercepts = np.asarray(intercepts, dtype=np.float32)
        self.card = card
        self.version = str(card.get("version", ""))

    @classmethod
    def load(cls, stem: Path | str = ARTIFACT) -> TaskClassifier:
        """The artifact at `<stem>.npz` + `<stem>.json`. Raises OSError when
        either cannot be read, ValueError when they are not a classifier's
        (truncated, wrong shapes, not finite, other classes or cues)."""
        stem = Path(stem)
        try:
            card = json.loads(stem.with_suffix(".json").read_text())
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
                vocabulary = bytes(data["vocabulary"]).decode("utf-8").split("\n")
                weights, intercepts = data["weights"], data["intercepts"]
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - zip, npy and JSON errors of a damaged file all mean one thing
            raise ValueError(f"classifier {stem} cannot be read: {type(exc).__name__}: {exc}") from None
        if not isinstance(card, dict):
            raise ValueError(f"classifier card {stem}.json is not a JSON object")
        if card.get("tasks") != list(TASKS) or card.get("complexities") != list(COMPLEXITIES):
            raise ValueError(f"classifier {stem} was trained for other classes")
        if card.get("cues_sha256") not in (None, cues_sha256()):
            raise ValueError(f"classifier {stem} was trained with another cue lexicon than {feats.CUES_PATH} "
                             "(run `sluice routing train`)")
        return cls(vocabulary, weights, intercepts, card)

    def scores(self, tokens: Iterable[str]) -> np.ndarray:
        """Decision values, shape (18 + 3,): tasks then complexities."""
        index = self._index
        rows = [i for i in (index.get(t) for t in tokens) if i is not None]
        if not rows:
            return self._intercepts.copy()
        return self._weights[rows].sum(axis=0) / math.sqrt(len(rows)) + self._intercepts

    def predict(self, features: feats.Features) -> Prediction:
        z = self.scores(features.tokens)
        task_p = _softmax(z[:_N_TASKS])
        complexity_p = _softmax(z[_N_TASKS:])
        t = int(task_p.argmax())
        c = int(complexity_p.argmax())
        return Prediction(TASKS[t], float(task_p[t]), COMPLEXITIES[c], float(complexity_p[c]),
                          float(complexity_p[c:].sum()))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


# -- the corpus ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled corpus line, with its features (from the request it stands for)."""

    entry: dict[str, Any]
    features: feats.Features

    @property
    def task(self) -> str:
        return str(self.entry["task"])

    @property
    def complexity(self) -> str:
        return str(self.entry["complexity"])


def read_corpus(folder: Path = CORPUS) -> tuple[list[Example], str]:
    """Every `*.jsonl` line under `folder` as an Example, and the SHA-256 of
    the files' bytes (sorted by name). Raises ValueError naming the file and
    line of a line that is not a labelled prompt."""
    digest = hashlib.sha256()
    examples: list[Example] = []
    seen: set[object] = set()
    for path in sorted(folder.glob("*.jsonl")):
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw)
        for where, entry in json_lines(raw.decode("utf-8"), path.name):
            problems = [k for k, allowed in (("task", TASKS), ("complexity", COMPLEXITIES), ("tier", TIERS))
                        if entry.get(k) not in allowed]
            if problems or not isinstance(entry.get("text"), str) or not entry["text"].strip():
                raise ValueError(f"{where}: bad {', '.join(problems) or 'text'}")
            if entry.get("id") in seen:
                raise ValueError(f"{where}: id {entry.get('id')!r} used twice")
            seen.add(entry.get("id"))
            examples.append(Example(entry, features_of(entry)))
    if not examples:
        raise ValueError(f"no corpus lines under {folder}")
    return examples, digest.hexdigest()


def json_lines(text: str, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """("<name>:<line>", object) for each non-blank line of JSON-lines
    `text`. Raises ValueError naming the line that is not a JSON object."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not a JSON object")
        yield where, entry


def features_of(entry: dict[str, Any]) -> feats.Features:
    """A corpus line's features: through the request it stands for."""
    body = json.dumps(feats.corpus_request(entry)).encode("utf-8")
    return feats.extract(MessagesRequest(body, exact=False))


def split(examples: list[Example], held_out: float = 0.25, seed: int = 15) -> tuple[list[Example], list[Example]]:
    """(train, test): `held_out` of each task's lines in the test part,
    chosen by a seeded shuffle (the same split on every machine)."""
    by_task: dict[str, list[Example]] = {}
    for example in examples:
        by_task.setdefault(example.task, []).append(example)
    train: list[Example] = []
    test: list[Example] = []
    rng = random.Random(seed)
    for task in sorted(by_task):
        group = sorted(by_task[task], key=lambda e: str(e.entry.get("id")))
        rng.shuffle(group)
        cut = max(1, round(len(group) * held_out))
        test += group[:cut]
        train += group[cut:]
    return train, test


# -- training and scoring (scikit-learn, offline) ---------------------------------------


def train(examples: list[Example], corpus_sha256: str, version: str, c: float = 8.0) -> TaskClassifier:
    """Fits both heads on `examples`. Raises ImportError without the train
    extra (scikit-learn)."""
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    frequency = Counter(t for e in examples for t in e.features.tokens)
    vocabulary = sorted(t for t, n in frequency.items() if n >= MIN_DOCUMENT_FREQUENCY)
    index = {t: i for i, t in enumerate(vocabulary)}
    rows, cols, values = [], [], []
    for r, example in enumerate(examples):
        present = [index[t] for t in example.features.tokens if t in index]
        for col in present:
            rows.append(r)
            cols.append(col)
            values.append(1.0 / math.sqrt(len(present)))
    x = csr_matrix((values, (rows, cols)), shape=(len(examples), len(vocabulary)), dtype=np.float64)
    heads = []
    for labels, classes in (([e.task for e in examples], TASKS), ([e.complexity for e in examples], COMPLEXITIES)):
        missing = set(classes) - set(labels)
        if missing:
            raise ValueError(f"the corpus has no line of {', '.join(sorted(missing))}")
        model = LogisticRegression(C=c, max_iter=3000)
        model.fit(x, [classes.index(label) for label in labels])
        heads.append(model)
    weights = np.hstack([h.coef_.T for h in heads]).astype(np.float32)
    intercepts = np.concatenate([h.intercept_ for h in heads]).astype(np.float32)
    import sklearn

    card = {"version": version, "corpus_sha256": corpus_sha256, "cues_sha256": cues_sha256(),
            "scikit_learn": sklearn.__version__, "examples": len(examples),
            "vocabulary": len(vocabulary), "tasks": list(TASKS), "complexities": list(COMPLEXITIES),
            "features": {"head_chars": feats.HEAD_CHARS, "tail_chars": feats.TAIL_CHARS,
                         "system_chars": feats.SYSTEM_CHARS, "min_document_frequency": MIN_DOCUMENT_FREQUENCY},
            "model": f"scikit-learn LogisticRegression(C={c}), binary features, rows L2-normalised"}
    return TaskClassifier(vocabulary, weights, intercepts, card)


def cues_sha256() -> str:
    """SHA-256 of the cue lexicon the features were computed with (it is
    part of the features: a new lexicon needs a new artifact)."""
    return hashlib.sha256(feats.CUES_PATH.read_bytes()).hexdigest()


def save(classifier: TaskClassifier, stem: Path = ARTIFACT) -> None:
    vocabulary = sorted(classifier._index, key=classifier._index.__getitem__)
    buffer = io.BytesIO()
    # float16 weights: half the size, and a score moves by less than 0.1%.
    np.savez_compressed(buffer, vocabulary=np.frombuffer("\n".join(vocabulary).encode("utf-8"), dtype=np.uint8),
                        weights=classifier._weights.astype(np.float16), intercepts=classifier._intercepts)
    stem.with_suffix(".npz").write_bytes(buffer.getvalue())
    stem.with_suffix(".json").write_text(json.dumps(classifier.card, indent=2, ensure_ascii=False) + "\n")


@dataclass
class Scores:
    """Per-class precision and recall, their macro means, and the confusion
    matrix (rows: true class, columns: predicted), for one head."""

    classes: tuple[str, ...]
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: list[list[int]]
    accuracy: float

    @property
    def macro_precision(self) -> float:
        return sum(self.precision.values()) / len(self.classes)

    @property
    def macro_recall(self) -> float:
        return sum(self.recall.values()) / len(self.classes)

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": round(self.accuracy, 4), "macro_precision": round(self.macro_precision, 4),
                "macro_recall": round(self.macro_recall, 4),
                "precision": {k: round(v, 4) for k, v in self.precision.items()},
                "recall": {k: round(v, 4) for k, v in self.recall.items()}}


def score(truth: list[str], predicted: list[str], classes: tuple[str, ...]) -> Scores:
    at = {c: i for i, c in enumerate(classes)}
    confusion = [[0] * len(classes) for _ in classes]
    for t, p in zip(truth, predicted, strict=True):
        confusion[at[t]][at[p]] += 1
    precision, recall = {}, {}
    for c, i in at.items():
        column = sum(row[i] for row in confusion)
        precision[c] = confusion[i][i] / column if column else 0.0
        recall[c] = confusion[i][i] / sum(confusion[i]) if sum(confusion[i]) else 0.0
    accuracy = sum(confusion[i][i] for i in range(len(classes))) / max(len(truth), 1)
    return Scores(classes, precision, recall, confusion, accuracy)


def evaluate(classifier: TaskClassifier, examples: list[Example]) -> tuple[Scores, Scores]:
    """(task scores, complexity scores) of `classifier` on `examples`."""
    predictions = [classifier.predict(e.features) for e in examples]
    return (score([e.task for e in examples], [p.task for p in predictions], TASKS),
            score([e.complexity for e in examples], [p.complexity for p in predictions], COMPLEXITIES))


def render(scores: Scores) -> str:
    """Per-class precision/recall and the confusion matrix as a text table."""
    width = max(len(c) for c in scores.classes)
    short = [c[:5] for c in scores.classes]
    lines = [f"{'class'.ljust(width)}  precision  recall   support"]
    for i, c in enumerate(scores.classes):
        lines.append(f"{c.ljust(width)}  {scores.precision[c]:9.3f}  {scores.recall[c]:6.3f}  "
                     f"{sum(scores.confusion[i]):8d}")
    lines.append(f"{'macro'.ljust(width)}  {scores.macro_precision:9.3f}  {scores.macro_recall:6.3f}  "
                 f"accuracy {scores.accuracy:.3f}")
    lines.append("")
    lines.append("confusion (rows true, columns predicted)")
    lines.append(" " * (width + 2) + " ".join(s.rjust(5) for s in short))
    for i, c in enumerate(scores.classes):
        lines.append(c.ljust(width) + "  " + " ".join(str(n).rjust(5) for n in scores.confusion[i]))
    return "\n".join(lines) + "\n"
