"""A fast, deliberately simple token estimate.

Claude's tokenizer is not public. About four characters per token holds for
English prose and code; this estimate only sizes reservations and the
simulator's usage, and is always settled against the provider's real count.
"""

from __future__ import annotations

from sluice.llm.v1 import messages_pb2

_CHARS_PER_TOKEN = 4
# Role markers and block framing the API adds around each turn.
_PER_MESSAGE_OVERHEAD = 4
# An image costs about (width*height)/750 tokens; without decoding, assume a
# mid-size image.
_IMAGE_TOKENS = 1600


def tokens_for_chars(chars: int) -> int:
    return (chars + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def estimate_text_tokens(text: str) -> int:
    return tokens_for_chars(len(text))


def _block_tokens(block: messages_pb2.ContentBlock) -> int:
    kind = block.WhichOneof("block")
    if kind == "text":
        return estimate_text_tokens(block.text.text)
    if kind == "image":
        return _IMAGE_TOKENS
    if kind == "tool_use":
        return estimate_text_tokens(block.tool_use.name) + estimate_text_tokens(str(block.tool_use.input))
    if kind == "tool_result":
        return sum(_block_tokens(b) for b in block.tool_result.content) + 2
    return 0


def estimate_params_tokens(params: messages_pb2.MessageParams) -> int:
    """Estimated input tokens of a request: system, tools and every turn."""
    total = sum(_block_tokens(b) for b in params.system)
    for tool in params.tools:
        total += estimate_text_tokens(tool.name) + estimate_text_tokens(tool.description)
        total += estimate_text_tokens(str(tool.input_schema))
    for message in params.messages:
        total += _PER_MESSAGE_OVERHEAD + sum(_block_tokens(b) for b in message.content)
    return max(total, 1)
