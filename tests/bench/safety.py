"""The safety stage alone, in-process, with the shipped pack's default profile.

- input check: SafetyPolicy.check_input on a prompt of about 1K, 10K and 100K
  tokens (4 characters a token) of prose with a few PII values in it, so the
  redaction path runs too;
- hostile input: 400 KB made of one pattern's anchor repeated (the inputs
  that make a backtracking or per-anchor scan blow up), against 400 KB of
  ordinary prompts (the routing corpus's, many languages): the ratio must
  stay under 3 (tests/unit/test_safety_linear_time.py asserts it for ~100
  anchors; these rows are the families);
- output filter: the cost of feeding one text delta (a word, as models
  stream) through OutputFilter, against the same loop without a filter; and
  how much text is held back before the first release.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass

from sluice.auth.v1 import principal_pb2
from sluice.llm.v1 import wire_pb2
from sluice.safety.core import PolicyStore, SafetyPolicy
from sluice.safety.engine import OutputFilter
from sluice.safety.policy import SHIPPED_POLICY_DIR
from sluice.wire.events import Event, text_delta

SIZES = {"1K": 1_000, "10K": 10_000, "100K": 100_000}
ROUNDS = {"1K": 300, "10K": 60, "100K": 12}
_WORDS = ("the quarterly ledger shows revenue growth across regions while support tickets fell and the team "
          "shipped the new gateway release to customers in three markets after review").split()
_PII = (" Contact jane.doe@example.com or +44 20 7946 0958.", " Card 4111 1111 1111 1111 on file.",
        " Server 10.20.30.40 is the primary.")


@dataclass
class InputRow:
    size: str
    chars: int
    p50_ms: float
    p99_ms: float


@dataclass
class HostileRow:
    anchor: str
    p50_ms: float
    ordinary_ms: float

    @property
    def ratio(self) -> float:
        return self.p50_ms / self.ordinary_ms if self.ordinary_ms else 0.0


# One anchor per family of detector or classifier.
HOSTILE = {"email a@": "a@", "spelled email": "a at b dot ", "phone digits": "1 ", "card groups": "4111 ",
           "IPv4 dots": "1.1.1.", "IPv6 colons": "::", "birth date": "born ", "secret sk-": "sk-",
           "connection URL": "://a:b@", "PEM header": "-----BEGIN PRIVATE KEY-----", "JWT eyJ": "eyJ",
           "HTML comment": "<!--", "hidden style": '<span style="display:none">',
           "base64 runs": "aGVsbG8gd29ybGQgaGVsbG8= ", "spaced letters": "a b c d ", "leetspeak": "1gn0r3 ",
           "reversed": "erongi ", "forged turns": "Human: x\n", "persona": "DAN ", "override": "ignore all previous ",
           "CJK override": "忽略"}
HOSTILE_SIZE = 400_000


def _corpus_prose() -> str:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "services/routing/sluice/routing/data/corpus"
    prompts = [json.loads(line)["text"] for path in sorted(folder.glob("*.jsonl"))
               for line in path.read_text().splitlines() if line.strip()]
    text = "\n\n".join(prompts)
    return (text * (HOSTILE_SIZE // len(text) + 1))[:HOSTILE_SIZE]


def _hostile(policy: SafetyPolicy, principal: principal_pb2.Principal) -> list[HostileRow]:
    def request(text: str) -> wire_pb2.WireRequest:
        return wire_pb2.WireRequest(anthropic_version="2023-06-01", body=json.dumps({
            "model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}).encode())

    def p50(params: wire_pb2.WireRequest) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            policy.check_input(principal, params)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    ordinary = request(_corpus_prose())
    policy.check_input(principal, ordinary)
    ordinary_ms = p50(ordinary)
    return [HostileRow(name, p50(request((anchor * (HOSTILE_SIZE // len(anchor) + 1))[:HOSTILE_SIZE])), ordinary_ms)
            for name, anchor in HOSTILE.items()]


@dataclass
class OutputRow:
    chunks: int
    per_chunk_us: float
    p99_chunk_us: float
    baseline_us: float
    first_release_chars: int


def _prose(tokens: int, rng: random.Random) -> str:
    out, size = [], 0
    while size < tokens * 4:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(14)).capitalize() + "."
        if rng.random() < 0.05:
            sentence += rng.choice(_PII)
        out.append(sentence)
        size += len(sentence) + 1
    return " ".join(out)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run() -> tuple[list[InputRow], OutputRow, list[HostileRow]]:
    rng = random.Random(7)
    policy = SafetyPolicy(PolicyStore(SHIPPED_POLICY_DIR))
    principal = principal_pb2.Principal(tenant_id="bench", safety_profile="default")
    inputs = []
    for label, tokens in SIZES.items():
        text = _prose(tokens, rng)
        params = wire_pb2.WireRequest(anthropic_version="2023-06-01", body=json.dumps({
            "model": "claude-sonnet-4-6", "max_tokens": 64,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}).encode())
        policy.check_input(principal, params)  # warm: compiled profile, regex caches
        times = []
        for _ in range(ROUNDS[label]):
            t0 = time.perf_counter()
            policy.check_input(principal, params)
            times.append((time.perf_counter() - t0) * 1000)
        inputs.append(InputRow(label, len(text), statistics.median(times), _pct(times, 0.99)))

    profile = policy.profile(principal)
    answer = _prose(500, rng)
    words = [w + " " for w in answer.split(" ")]
    # As the filter receives them: type and JSON text, parsed on first use.
    deltas = [(w, text_delta(0, w).data) for w in words]
    start = Event.of({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    per_chunk: list[float] = []
    baseline: list[float] = []
    first_release = 0
    for round_no in range(20):
        out_filter = OutputFilter(profile)
        out_filter.feed(start)
        received = 0
        for word, data in deltas:
            received += len(word)
            t0 = time.perf_counter()
            released = out_filter.feed(Event("content_block_delta", data))
            per_chunk.append((time.perf_counter() - t0) * 1e6)
            if round_no == 0 and released and not first_release:
                first_release = received
        sink: list[Event] = []
        for _, data in deltas:  # the same loop, nothing filtered: what the loop itself costs
            t0 = time.perf_counter()
            sink.append(Event("content_block_delta", data))
            baseline.append((time.perf_counter() - t0) * 1e6)
    output = OutputRow(len(deltas), statistics.mean(per_chunk), _pct(per_chunk, 0.99), statistics.mean(baseline),
                       first_release)
    return inputs, output, _hostile(policy, principal)


def table(inputs: list[InputRow], output: OutputRow, hostile: list[HostileRow]) -> str:
    lines = [f"{'input check':<14}{'chars':>10}{'p50 ms':>10}{'p99 ms':>10}"]
    lines += [f"{r.size + ' tokens':<14}{r.chars:>10}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}" for r in inputs]
    lines.append("")
    if hostile:
        lines.append(f"{'hostile 400 KB':<22}{'p50 ms':>10}{'ordinary ms':>13}{'ratio':>8}")
        lines += [f"{r.anchor:<22}{r.p50_ms:>10.1f}{r.ordinary_ms:>13.1f}{r.ratio:>8.2f}" for r in hostile]
        lines.append("")
    lines.append(f"{'output filter':<14}{'chunks':>10}{'mean us':>10}{'p99 us':>10}{'no filter us':>14}")
    lines.append(f"{'per chunk':<14}{output.chunks:>10}{output.per_chunk_us:>10.1f}{output.p99_chunk_us:>10.1f}"
                 f"{output.baseline_us:>14.2f}")
    lines.append(f"First text released after {output.first_release_chars} characters of the answer "
                 "(holdback window + one release step).")
    return "\n".join(lines)
