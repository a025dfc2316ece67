"""The task classifier and the offline tools (issue 15): the shipped artifact
is the corpus's, serving computes what scikit-learn computes, the corpus
floors hold, and replay/report read traces and billing records."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sluice.config import load
from sluice.routing import classifier as clf
from sluice.routing import cli as routing_cli
from sluice.routing.classifier import TASKS, TaskClassifier
from sluice.runtime.cli import main


@pytest.fixture(scope="module")
def corpus():
    return clf.read_corpus()


@pytest.fixture(scope="module")
def held_out():
    return routing_cli.held_out_scores(clf.CORPUS)


def test_corpus_is_big_varied_and_labelled(corpus):
    examples, _digest = corpus
    assert len(examples) >= 600
    tasks = {e.task for e in examples}
    assert tasks == set(TASKS)
    languages = {e.entry.get("lang") for e in examples}
    assert len(languages) >= 6
    long = [e for e in examples if len(e.entry["text"].split()) > 150]
    short = [e for e in examples if len(e.entry["text"].split()) < 15]
    assert len(long) >= 60 and len(short) >= 60
    assert sum(bool(e.entry.get("hard")) for e in examples) >= 90


def test_shipped_artifact_is_the_corpus_current_one(corpus, held_out):
    _examples, digest = corpus
    shipped = TaskClassifier.load()
    assert shipped.card["corpus_sha256"] == digest, "corpus changed: run `sluice routing train` and commit"
    assert shipped.card["cues_sha256"] == clf.cues_sha256(), "cue lexicon changed: run `sluice routing train`"
    model, tasks, _complexity, _test = held_out
    # Retraining gives the shipped weights, and the card's scores are its held-out scores.
    # (float16 in the artifact: equal to its rounding, whatever the machine's floating-point order.)
    assert np.allclose(model._weights, shipped._weights, rtol=2e-3, atol=1e-3)
    assert shipped.card["held_out"]["task"]["macro_recall"] == pytest.approx(tasks.macro_recall, abs=1e-4)
    assert Path(str(clf.ARTIFACT) + ".npz").stat().st_size < 1_000_000  # a small artifact


def test_held_out_scores_meet_the_floors(held_out):
    _model, tasks, complexity, test = held_out
    assert len(test) >= 150
    assert tasks.macro_precision >= routing_cli.TASK_FLOOR and tasks.macro_recall >= routing_cli.TASK_FLOOR, \
        clf.render(tasks)
    assert complexity.macro_precision >= routing_cli.COMPLEXITY_FLOOR
    assert complexity.macro_recall >= routing_cli.COMPLEXITY_FLOOR, clf.render(complexity)


def test_serving_computes_what_scikit_learn_computes(corpus):
    """Training-serving skew: the artifact's arithmetic (weight rows of the
    tokens present over the square root of their count, plus intercepts)
    equals a fitted scikit-learn model's decision_function on the feature
    rows the training code builds."""
    from sklearn.linear_model import LogisticRegression

    examples, digest = corpus
    subset = examples[::3]
    index = clf.train(subset, digest, "t")._index  # the training code's vocabulary
    vocabulary = sorted(index, key=index.__getitem__)
    x = _matrix(subset, index)
    heads = [LogisticRegression(C=8.0, max_iter=3000).fit(x, [classes.index(getattr(e, name)) for e in subset])
             for name, classes in (("task", TASKS), ("complexity", clf.COMPLEXITIES))]
    served = TaskClassifier(vocabulary, np.hstack([h.coef_.T for h in heads]),
                            np.concatenate([h.intercept_ for h in heads]), {})
    got = np.stack([served.scores(e.features.tokens) for e in subset[:50]])
    expected = np.hstack([h.decision_function(x[:50]) for h in heads])
    assert np.allclose(got, expected, atol=1e-4)


def _matrix(examples, index):
    m = np.zeros((len(examples), len(index)))
    for r, e in enumerate(examples):
        present = [index[t] for t in e.features.tokens if t in index]
        for c in present:
            m[r, c] = 1 / math.sqrt(len(present))
    return m


def test_eval_command_prints_per_task_scores_and_the_confusion_matrix():
    out, err = io.StringIO(), io.StringIO()
    assert main(["routing", "eval"], out, err) == 0, out.getvalue() + err.getvalue()
    text = out.getvalue()
    assert "confusion (rows true, columns predicted)" in text and "legal_analysis" in text and "macro" in text


def test_replay_of_the_labelled_trace_reports_shares_cost_and_accuracy(tmp_path):
    trace = clf.ARTIFACT.parent / "trace-heldout.jsonl"
    out, err = io.StringIO(), io.StringIO()
    assert main(["routing", "replay", str(trace), "--json"], out, err) == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["requests"] >= 150 and result["refused"] == 0
    assert set(result["tiers"]) <= {"fast", "balanced", "top"} and len(result["tiers"]) == 3
    assert 0 < result["cost_per_request_usd"] < result["all_top_cost_per_request_usd"]
    assert result["saving"] > 0.3
    assert result["tier_accuracy"] > 0.5 and result["below_floor"] == 0
    assert len(result["trajectory"]) >= 10


def test_replay_accepts_billing_records_and_another_policy(tmp_path):
    # As the sinks store it: proto3 JSON, 64-bit integers as strings.
    record = {"event_id": "e1", "request": {
        "request_id": "r1", "model_requested": "auto", "model_served": "claude-opus-4-6", "input_tokens": "1200",
        "output_tokens": "300", "route": {"requested": "auto", "policy": "auto", "task": "translation",
                                          "complexity": "high", "task_confidence": 0.8,
                                          "complexity_confidence": 0.7, "prompt_tokens": "1200", "turns": 1}}}
    trace = tmp_path / "billing.jsonl"
    bad = [{"request": {"route": "x"}}, {"request": {**record["request"], "output_tokens": -5}}, {"nothing": 1}]
    trace.write_text("".join(json.dumps(line) + "\n" for line in [record, *bad]))
    router = routing_cli.replay_router(load(None))
    auto = routing_cli.replay(router, routing_cli.read_trace(trace))
    frugal = routing_cli.replay(routing_cli.replay_router(load(None)), routing_cli.read_trace(trace),
                                policy="frugal")
    assert auto.tiers == {"top": 1} and frugal.tiers == {"balanced": 1}
    assert auto.refused == 3 and [why.split(":")[0] for why in auto.refusals] == ["line 2", "line 3", "line 4"]
    assert frugal.cost_usd < auto.cost_usd == pytest.approx(auto.top_cost_usd)


def test_report_compares_arms_from_billing_records():
    def event(arm: str, cost: float, ms: float, error: bool = False, fallback: bool = False) -> dict:
        return {"request": {"route": {"experiment": "x", "arm": arm}, "cost_usd": cost, "total_ms": ms,
                            "outcome": "OUTCOME_ERROR" if error else "OUTCOME_OK",
                            **({"fallbacks": ["m"]} if fallback else {})}}

    events = [event("a", 0.01, 100), event("a", 0.03, 300, fallback=True), event("b", 0.002, 50, error=True),
              {"request": {"cost_usd": 9.0}}]
    lines = routing_cli.compare_arms(iter(events))
    assert [(line.arm, line.requests, round(line.cost_usd, 3), line.errors, line.fallbacks) for line in lines] == [
        ("a", 2, 0.04, 0, 1), ("b", 1, 0.002, 1, 0)]
    assert "USD/request" in routing_cli.render_arms(lines)


def test_replay_proves_a_candidate_policies_file_before_it_serves(tmp_path):
    from importlib import resources

    text = resources.files("sluice.catalog").joinpath("policies.yaml").read_text()
    # A candidate version sending every simple question to the top tier.
    candidate = text.replace("  simple_qa:           {low: fast,     medium: balanced, high: top,",
                             "  simple_qa:           {low: top,      medium: top,      high: top,")
    assert candidate != text
    (tmp_path / "candidate.yaml").write_text(candidate)
    trace = clf.ARTIFACT.parent / "trace-heldout.jsonl"
    results = []
    for extra in ([], ["--policies", str(tmp_path / "candidate.yaml")]):
        out, err = io.StringIO(), io.StringIO()
        assert main(["routing", "replay", str(trace), "--json", *extra], out, err) == 0, err.getvalue()
        results.append(json.loads(out.getvalue()))
    shipped, proposed = results
    assert proposed["tiers"]["top"] > shipped["tiers"]["top"]
    assert proposed["cost_per_request_usd"] > shipped["cost_per_request_usd"]

