"""Every detector and classifier of the input check costs time linear in the
input: 400 KB made of one pattern's anchor repeated (what makes a
backtracking or per-anchor scan blow up) takes at most 3x the time of 400 KB
of ordinary prompts, the whole default profile on the same machine.

The ordinary text is the routing corpus's real prompts (many languages).
Times are the best of a few runs, taken interleaved with the reference so a
busy machine slows both alike."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sluice.safety import heuristics, secrets
from sluice.safety.engine import check_input
from sluice.safety.policy import SHIPPED_POLICY_DIR, load_policy
from sluice.wire.request import MessagesRequest

SIZE = 400_000
PROFILE = load_policy(SHIPPED_POLICY_DIR).profile("default", "linear-time")
_CORPUS = Path(__file__).resolve().parents[2] / "services/routing/sluice/routing/data/corpus"


def _ordinary() -> str:
    prompts = [json.loads(line)["text"] for path in sorted(_CORPUS.glob("*.jsonl"))
               for line in path.read_text().splitlines() if line.strip()]
    text = "\n\n".join(prompts)
    return (text * (SIZE // len(text) + 1))[:SIZE]


# Anchors: what each detector, classifier or rule looks for first.
_ANCHORS = sorted({
    # PII detectors
    "a@", "@", "a at b dot ", " dot ", "1 ", "1.", "+1 ", "00", "(0", "SSN ", "born ", "geboren am ",
    "de89 ", "DE89 3704 ", "::", "1.1.1.", "§ 1.", "4111 ", "4111.", "\\u0040", "[at] ", "git@h:",
    # secrets
    "sk-", "sk-ant-", "AKIA", "ghp_", "password=", "://a:b@", "-----BEGIN PRIVATE KEY-----", "xoxb-", "key=",
    "token: ", "eyJ", "sk_live_", "postgres://u:",
    # heuristics and hidden text
    "<!--", '<span style="display:none">', "aGVsbG8gd29ybGQgaGVsbG8= ", "a b c d ", "1gn0r3 ", "erongi ",
    "Human: x\n", "assistant: ", "DAN ", "忽略", "无视指令", "\u200b", "\U000e0041", "rot13 ", "<|im_start|>",
    "ignore ", "ignore all previous ", "note to the ai ", "developer mode ", "you are now ", "pretend ",
    # the first anchor of every phrase family
    *(signal.anchors[0] + " " for signal in heuristics._INJECTION + heuristics._JAILBREAK),
    # keywords of the secret rules, a deterministic sample
    *secrets.keywords()[::max(1, len(secrets.keywords()) // 25)],
})


def _request(text: str) -> MessagesRequest:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{"role": "user", "content": text}]}
    return MessagesRequest(json.dumps(body).encode(), "2023-06-01", count_tokens=True, exact=False)


def _seconds(request: MessagesRequest) -> float:
    t0 = time.perf_counter()
    check_input(PROFILE, request)
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def ordinary() -> MessagesRequest:
    request = _request(_ordinary())
    _seconds(request)  # warm: compiled gates, the model's scratch arrays
    return request


@pytest.mark.parametrize("anchor", _ANCHORS, ids=lambda a: repr(a)[1:-1][:24])
def test_repeating_an_anchor_costs_at_most_three_times_ordinary_text(anchor, ordinary):
    hostile = _request((anchor * (SIZE // len(anchor) + 1))[:SIZE])
    reference, worst = [], []
    for _ in range(3):
        reference.append(_seconds(ordinary))
        worst.append(_seconds(hostile))
        if min(worst) <= 3 * min(reference):
            break
    print(f"{anchor!r}: {min(worst) * 1000:.1f} ms against {min(reference) * 1000:.1f} ms ordinary")
    assert min(worst) <= 3 * min(reference), (anchor, min(worst), min(reference))
