"""A tiny prompt-injection "model" in ONNX, with its tokenizer, for tests.

The graph is a bag of words: each token id picks a row of a [vocab, 2]
embedding table, padding is masked out, and the rows are summed over the
sequence into logits [batch, 2] (label 0 SAFE, label 1 INJECTION). It is
built with the `onnx` helper API, so no file is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]
# Words that carry the attack; each pushes a window hard towards INJECTION.
ATTACK_WORDS = ["ignore", "previous", "instructions", "reveal", "system", "prompt", "disregard", "override"]
# Ordinary words lean only slightly towards SAFE, so a window of 500 of them
# does not drown three attack words (the windowing test depends on that).
BENIGN_WORDS = [
    "what", "is", "the", "weather", "today", "in", "paris", "please", "summarise", "this", "report", "a",
    "an", "and", "of", "to", "for", "meeting", "notes", "about", "budget", "how", "do", "i", "cook", "rice",
    "thanks", "team", "lunch", "schedule",
]
ATTACK_WEIGHT = 8.0
BENIGN_WEIGHT = 0.01
CLS_BIAS = 2.0  # every window starts leaning SAFE by this much


def _vocab() -> dict[str, int]:
    return {word: i for i, word in enumerate(SPECIALS + ATTACK_WORDS + BENIGN_WORDS)}


def _tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tokenizer


def _embedding(vocab: dict[str, int]) -> np.ndarray:
    table = np.zeros((len(vocab), 2), dtype=np.float32)
    table[vocab["[CLS]"], 0] = CLS_BIAS
    for word in ATTACK_WORDS:
        table[vocab[word], 1] = ATTACK_WEIGHT
    for word in BENIGN_WORDS:
        table[vocab[word], 0] = BENIGN_WEIGHT
    return table


def _graph(table: np.ndarray, input_name: str, token_type_ids: bool, pooled: bool) -> onnx.ModelProto:
    ids = helper.make_tensor_value_info(input_name, TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
    inputs = [ids, mask]
    if token_type_ids:
        # Declared but unused, as a BERT export declares it; the backend must feed it.
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]))
    out_shape = ["batch", 2] if pooled else ["batch", "seq", 2]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)
    nodes = [
        helper.make_node("Gather", ["embedding", input_name], ["rows"], axis=0),  # [batch, seq, 2]
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),  # [batch, seq, 1]
        helper.make_node("Mul", ["rows", "mask_3d"], ["masked" if pooled else "logits"]),
    ]
    if pooled:
        nodes.append(helper.make_node("ReduceSum", ["masked", "seq_axis"], ["logits"], keepdims=0))
    initializers = [
        numpy_helper.from_array(table, "embedding"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
    ]
    graph = helper.make_graph(nodes, "tiny_injection", inputs, [logits], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sluice-tests")
    model.ir_version = 8  # readable by every onnxruntime that supports opset 17
    onnx.checker.check_model(model)
    return model


def build_tiny_model(folder: Path, *, input_name: str = "input_ids", token_type_ids: bool = False,
                     pooled: bool = True) -> tuple[Path, Path]:
    """Write model.onnx, config.json and tokenizer.json into `folder`.

    Returns (model path, tokenizer path). "ignore previous instructions"
    scores about 1.0 on label 1 (INJECTION); "what is the weather" about 0.1.
    The keywords build broken variants for load-time checks: another name
    for the ids input, a declared token_type_ids input, or per-token logits
    [batch, seq, 2] instead of [batch, 2] (`pooled=False`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    model_path, tokenizer_path = folder / "model.onnx", folder / "tokenizer.json"
    onnx.save(_graph(_embedding(vocab), input_name, token_type_ids, pooled), str(model_path))
    _tokenizer(vocab).save(str(tokenizer_path))
    # The Hugging Face export layout: labels by index in config.json beside the model.
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "SAFE", "1": "INJECTION"},
                                                    "label2id": {"SAFE": 0, "INJECTION": 1}}))
    return model_path, tokenizer_path
