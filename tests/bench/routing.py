"""Routing decisions alone, in process (issue 15): a named model, `auto`
on a one-line prompt and on a 1K-token prompt, and the classifier alone on
the 1K-token prompt (features + prediction: the issue's 0.3 ms p50); then
the replay of the project's labelled trace (the corpus's held-out split)
under each shipped policy."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from sluice.auth.v1.principal_pb2 import Principal
from sluice.config import load
from sluice.llm.v1 import wire_pb2
from sluice.routing import cli as routing_cli
from sluice.routing import features as feats
from sluice.routing.classifier import ARTIFACT
from sluice.wire.request import MessagesRequest
from tests.bench.timing import p50_p99, samples_ns

TRACE = ARTIFACT.parent / "trace-heldout.jsonl"
# A target below what the auto policy spends on the trace unchecked: the controller at work.
TIGHT_TARGET_USD = 0.006
# About 1,000 tokens of ordinary prose (the codec's estimate: 4 characters a token).
_PARAGRAPH = ("The quarterly report shows revenue growth in every region, driven by the new subscription plans and "
              "a lower churn rate among small business customers, while costs rose with the data centre expansion. ")
LONG = "Summarise the following report for the board in five bullet points.\n\n" + _PARAGRAPH * 20
# The same size in German (non-ASCII: another tokenizer path) and in Chinese (character pairs).
LONG_DE = "Fasse den folgenden Bericht in fünf Punkten zusammen.\n\n" + (
    "Der Quartalsbericht zeigt ein Umsatzwachstum in allen Regionen, getrieben von den neuen Abonnements und "
    "einer geringeren Kündigungsrate bei kleinen Unternehmen, während die Kosten mit dem Ausbau stiegen. ") * 20
LONG_ZH = "请用五个要点为董事会总结以下报告。\n\n" + (
    "季度报告显示所有地区的收入均有增长，这得益于新的订阅计划以及小企业客户流失率的降低，而成本随着数据中心的扩张而上升。") * 35


@dataclass
class Timing:
    what: str
    runs: int
    p50_us: float
    p99_us: float


def _time(what: str, fn, runs: int) -> Timing:
    p50, p99 = p50_p99([ns / 1000 for ns in samples_ns(fn, runs)])
    return Timing(what, runs, p50, p99)


def run(runs: int = 5000) -> tuple[list[Timing], dict[str, routing_cli.ReplayResult]]:
    settings = load(None)
    router = routing_cli.replay_router(settings)
    principal = Principal(tenant_id="bench", tier="enterprise", region="local")
    def body(text: str) -> bytes:
        return json.dumps({"model": "auto", "max_tokens": 256, "messages": [{"role": "user", "content": text}]}
                          ).encode()

    short_wire = wire_pb2.WireRequest(body=body("What is the capital of France?"))
    long_wire = wire_pb2.WireRequest(body=body(LONG))
    assert router.classifier is not None
    classifier = router.classifier
    timings = [
        _time("named model (claude-sonnet-4-6)", lambda: router.route(principal, "claude-sonnet-4-6", 256), runs),
        _time("auto, one-line prompt", lambda: router.route(principal, "auto", 256, request=short_wire), runs),
        _time(f"auto, {MessagesRequest(long_wire.body).estimated_input_tokens()}-token prompt",
              lambda: router.route(principal, "auto", 256, request=long_wire), runs),
    ]
    for language, text in (("English", LONG), ("German", LONG_DE), ("Chinese", LONG_ZH)):
        parsed = MessagesRequest(body(text), exact=False)
        timings.append(_time(f"classifier alone, {parsed.estimated_input_tokens()}-token {language} prompt",
                             lambda parsed=parsed: classifier.predict(feats.extract(parsed)), runs))
    replays = {}
    for policy, target in (("auto", None), ("frugal", None), ("auto", TIGHT_TARGET_USD)):
        replayer = routing_cli.replay_router(settings, target)
        name = policy if target is None else f"{policy}, target USD {target}"
        replays[name] = routing_cli.replay(replayer, routing_cli.read_trace(TRACE), policy=policy)
    return timings, replays


def table(timings: list[Timing]) -> str:
    width = max(len(t.what) for t in timings)
    lines = [f"{'decision':<{width}} {'runs':>6} {'p50 us':>8} {'p99 us':>8}"]
    lines += [f"{t.what:<{width}} {t.runs:>6} {t.p50_us:>8.1f} {t.p99_us:>8.1f}" for t in timings]
    return "\n".join(lines)


def replay_tables(replays: dict[str, routing_cli.ReplayResult]) -> str:
    out = io.StringIO()
    for policy, result in replays.items():
        out.write(routing_cli.render_replay(result, f"policy {policy} over {TRACE.name}:"))
        out.write("\n")
    return out.getvalue()


def verdict(timings: list[Timing]) -> str:
    classify = [t for t in timings if t.what.startswith("classifier alone")]
    english = classify[0]
    return (f"Target: classification p50 <= 300 us for a 1K-token prompt: {english.p50_us:.0f} us (English), "
            + ", ".join(f"{t.p50_us:.0f} us ({t.what.split()[-2]})" for t in classify[1:]) + " -> "
            + ("met" if max(t.p50_us for t in classify) <= 300 else "NOT met"))
