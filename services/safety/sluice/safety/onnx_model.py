"""A classifier backed by an operator-supplied ONNX model.

Operators who want a stronger prompt-injection classifier than the pattern
heuristics export one themselves (for example a DeBERTa-class sequence
classifier through Hugging Face Optimum) and name its files in the policy
pack. Nothing is downloaded: the model, its `tokenizer.json` and optionally a
`config.json` beside the model (for label names) are read from disk once.

A text longer than the model's window is cut into overlapping windows of
`max_tokens` tokens (`stride` tokens of overlap), so an attack buried deep in
a long prompt is still seen whole by some window. The score is the highest
window's probability of the positive label; the finding is that window's
span. The result has the shape the heuristics in `heuristics.py` return, so
a model registers and is named by rules the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from sluice.safety.detectors import Finding, Text

_ID_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fixed(dim: Any) -> int | None:
    """A dimension the model fixes, or None when it is symbolic (dynamic)."""
    return dim if isinstance(dim, int) and dim > 0 else None


def _read_config(model: Path) -> dict[str, Any] | None:
    path = model.parent / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not readable as JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config


def _labels(config: dict[str, Any] | None, path: Path) -> list[str] | None:
    """Label names by index from a Hugging Face config's `id2label`, if it has one."""
    id2label = (config or {}).get("id2label")
    if id2label is None:
        return None
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{path}: id2label must map label indexes to names") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(f"{path}: id2label indexes must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
    return [by_index[i] for i in range(len(by_index))]


class OnnxClassifier:
    """A sequence classifier in ONNX, scoring a text 0..1 for one label.

    `model` is an ONNX file taking `input_ids` [batch, seq] (int64 or int32),
    optionally `attention_mask` and `token_type_ids` of the same shape, and
    giving logits [batch, n_labels] as its output named `logits` or else its
    first output. `tokenizer` is a Hugging Face `tokenizer.json`; its
    post-processor adds the special tokens. `positive_label` is an index or
    a name from `id2label` in the `config.json` beside the model.
    `max_tokens` is the window length in tokens including special tokens,
    `stride` the overlap between windows in tokens, `batch` the windows per
    model run, `threads` the intra-op threads of the session.

    Raises ValueError, naming the file, when a file is missing or unreadable,
    the model's inputs or outputs do not have those shapes, the label is
    unknown, or the window settings do not fit the tokenizer or the model.
    The session and tokenizer are configured once here and only read after,
    so one instance serves many threads.
    """

    def __init__(self, name: str, model: Path, tokenizer: Path, positive_label: int | str = 1,
                 max_tokens: int = 512, stride: int = 64, batch: int = 8, threads: int = 1) -> None:
        # Imported here: the service runs without them unless a pack names a model.
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as err:
            raise ValueError(f"classifier {name!r} needs onnxruntime and tokenizers installed: {err}") from None

        self.name = name
        self.model_path, self.tokenizer_path = Path(model), Path(tokenizer)
        for path in (self.model_path, self.tokenizer_path):
            if not path.is_file():
                raise ValueError(f"{path}: file not found")
        if batch < 1 or threads < 1:
            raise ValueError(f"classifier {name!r}: batch and threads must be at least 1")

        try:
            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception for a bad file
            raise ValueError(f"{self.tokenizer_path}: not a readable tokenizer.json: {err}") from None
        specials = self._tokenizer.num_special_tokens_to_add(False)
        if not 0 <= stride < max_tokens - specials:
            raise ValueError(f"classifier {name!r}: stride must be 0..{max_tokens - specials - 1} "
                             f"(max_tokens {max_tokens} less {specials} special tokens), got {stride}")

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; ORT's load-time warnings are not actionable here
        try:
            self.sha256 = _sha256(self.model_path)
            self._session = onnxruntime.InferenceSession(str(self.model_path), options,
                                                         providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types for a bad file
            raise ValueError(f"{self.model_path}: not a loadable ONNX model: {err}") from None

        self._inputs = {i.name: i for i in self._session.get_inputs()}
        self._check_inputs()
        ids = self._inputs["input_ids"]
        fixed_batch, fixed_seq = _fixed(ids.shape[0]), _fixed(ids.shape[1])
        if fixed_seq is not None and max_tokens > fixed_seq:
            raise ValueError(f"{self.model_path}: the model takes {fixed_seq} tokens; max_tokens is {max_tokens}")
        # Without a mask a padded window would be read with its padding, so each runs alone.
        self._batch = fixed_batch or (batch if "attention_mask" in self._inputs else 1)
        self._pad_rows = fixed_batch is not None  # a fixed batch is filled up with padding rows
        self._seq = fixed_seq

        self._output, n_labels = self._check_output()
        config = _read_config(self.model_path)
        max_positions = (config or {}).get("max_position_embeddings")
        if isinstance(max_positions, int) and max_tokens > max_positions:
            raise ValueError(f"{self.model_path.parent / 'config.json'}: the model has {max_positions} positions; "
                             f"max_tokens is {max_tokens}")
        self.labels = _labels(config, self.model_path.parent / "config.json")
        if self.labels is not None and n_labels is not None and len(self.labels) != n_labels:
            raise ValueError(f"{self.model_path}: {n_labels} logits but config.json names {len(self.labels)} labels")
        self.positive = self._positive_index(positive_label, n_labels or (len(self.labels) if self.labels else None))

        self.max_tokens, self.stride = max_tokens, stride
        self._tokenizer.enable_truncation(max_tokens, stride=stride)
        self._tokenizer.no_padding()  # each batch is padded to its own longest window below
        self._pad_id = self._pad_token_id()

    def _check_inputs(self) -> None:
        path = self.model_path
        if "input_ids" not in self._inputs:
            raise ValueError(f"{path}: the model has no input named input_ids (inputs: {sorted(self._inputs)})")
        unknown = sorted(set(self._inputs) - set(_KNOWN_INPUTS))
        if unknown:
            raise ValueError(f"{path}: inputs {unknown} cannot be fed; expected only {list(_KNOWN_INPUTS)}")
        for arg in self._inputs.values():
            if arg.type not in _ID_TYPES:
                raise ValueError(f"{path}: input {arg.name} is {arg.type}; expected tensor(int64) or tensor(int32)")
            if len(arg.shape) != 2:
                raise ValueError(f"{path}: input {arg.name} has shape {arg.shape}; expected [batch, seq]")

    def _check_output(self) -> tuple[str, int | None]:
        outputs = self._session.get_outputs()
        out = next((o for o in outputs if o.name == "logits"), outputs[0])
        if not out.type.startswith("tensor(float") and out.type not in ("tensor(double)", "tensor(bfloat16)"):
            raise ValueError(f"{self.model_path}: output {out.name} is {out.type}; expected float logits")
        if out.shape is None or len(out.shape) != 2:
            raise ValueError(f"{self.model_path}: output {out.name} has shape {out.shape}; "
                             "expected logits [batch, n_labels]")
        n_labels = _fixed(out.shape[1])
        if n_labels is not None and n_labels < 2:
            # A softmax over one logit is always 1; single-logit (sigmoid) heads are not supported.
            raise ValueError(f"{self.model_path}: output {out.name} has {n_labels} label; expected at least 2")
        return out.name, n_labels

    def _positive_index(self, label: int | str, n_labels: int | None) -> int:
        if isinstance(label, str):
            if self.labels is None:
                raise ValueError(f"{self.model_path.parent / 'config.json'}: positive_label {label!r} is a name, "
                                 "but there is no config.json with id2label beside the model")
            if label not in self.labels:
                raise ValueError(f"{self.model_path.parent / 'config.json'}: no label {label!r} in id2label "
                                 f"(labels: {self.labels})")
            return self.labels.index(label)
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise ValueError(f"classifier {self.name!r}: positive_label must be a label index or name, got {label!r}")
        if n_labels is not None and label >= n_labels:
            raise ValueError(f"{self.model_path}: positive_label {label} but the model has {n_labels} labels")
        return label

    def _pad_token_id(self) -> int:
        for token in ("[PAD]", "<pad>", "<|pad|>"):
            if (token_id := self._tokenizer.token_to_id(token)) is not None:
                return token_id
        return 0  # masked out by attention_mask, so any valid id does

    def classify(self, text: str | Text) -> tuple[float, list[Finding]]:
        """(score 0..1, [the best window's span]) for `text`, read as its normalised form.

        The score is the highest softmax probability of the positive label over
        all windows. The finding is always given for a non-empty text; rules
        apply their own threshold. Empty or blank text scores 0.0 unrun.
        """
        if isinstance(text, str):
            text = Text(text)
        if not text.norm.strip():
            return 0.0, []
        first = self._tokenizer.encode(text.norm)
        windows = [first, *first.overflowing]
        best_score, best = -1.0, 0
        for start in range(0, len(windows), self._batch):
            scores = self._run(windows[start:start + self._batch])
            top = int(np.argmax(scores))
            if scores[top] > best_score:
                best_score, best = float(scores[top]), start + top
        return best_score, self._span(text, windows[best])

    def _run(self, windows: list[Any]) -> np.ndarray:
        """The positive label's probability for each window, shape [len(windows)]."""
        rows = self._batch if self._pad_rows else len(windows)
        width = self._seq or max(len(w.ids) for w in windows)
        ids = np.full((rows, width), self._pad_id, dtype=np.int64)
        mask = np.zeros((rows, width), dtype=np.int64)
        for row, window in enumerate(windows):
            ids[row, :len(window.ids)] = window.ids
            mask[row, :len(window.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feed = {k: v.astype(_ID_TYPES[self._inputs[k].type], copy=False) for k, v in feed.items() if k in self._inputs}
        (logits,) = self._session.run([self._output], feed)
        if logits.ndim != 2 or logits.shape[0] != rows or logits.shape[1] <= self.positive:
            raise ValueError(f"{self.model_path}: output {self._output} has shape {logits.shape}; "
                             f"expected [{rows}, >{self.positive}]")
        logits = logits[:len(windows)].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)  # softmax without overflow
        probs = np.exp(logits)
        return probs[:, self.positive] / probs.sum(axis=1)

    def _span(self, text: Text, window: Any) -> list[Finding]:
        """The window's character span in the normalised text, as a finding in the original's offsets."""
        spans = [off for off, special in zip(window.offsets, window.special_tokens_mask) if not special]
        start, end = min((s for s, _ in spans), default=0), max((e for _, e in spans), default=0)
        return [text.finding(self.name, start, end)] if end > start else []

    def card(self) -> dict[str, Any]:
        """What is loaded, for audit and the admin API: name, files, SHA-256, labels, windows, inputs, outputs."""
        return {
            "name": self.name,
            "model": str(self.model_path),
            "model_sha256": self.sha256,
            "tokenizer": str(self.tokenizer_path),
            "labels": self.labels,
            "positive_label": self.positive,
            "positive_label_name": self.labels[self.positive] if self.labels else None,
            "max_tokens": self.max_tokens,
            "stride": self.stride,
            "batch": self._batch,
            "inputs": [{"name": i.name, "type": i.type, "shape": list(i.shape)} for i in self._session.get_inputs()],
            "outputs": [{"name": o.name, "type": o.type, "shape": list(o.shape)}
                        for o in self._session.get_outputs()],
        }
