"""`sluice routing train | eval | replay | report`: the classifier and the
policies, proved offline with the router's own code.

- train: fits the classifier on the corpus's training split and writes the
  artifact (its card records the corpus's SHA-256 and its scores on the
  held-out split) and the held-out split as the labelled replay trace
  (`data/trace-heldout.jsonl`).
- eval: fits on the training split again (deterministic: the shipped
  weights) and scores the held-out split: per-task precision and recall,
  the confusion matrix, complexity likewise.
- replay TRACE: runs the router (same code, same classifier, the policy
  asked for) over a trace and prints the shares per tier and model, the
  blended cost per request, the saving against sending everything to the
  top tier, tier accuracy against labels and the controller's trajectory.
- report: compares experiment arms from the sink's billing records.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sluice.auth.v1 import principal_pb2
from sluice.config import ConfigError, Settings
from sluice.llm.v1 import messages_pb2, wire_pb2
from sluice.routing import classifier as clf
from sluice.routing import features as feats
from sluice.routing.controller import DEPLOYMENT, CostController
from sluice.routing.core import Router, estimate_cost
from sluice.routing.policy import rank
from sluice.routing.v1 import decision_pb2
from sluice.rpc.errors import SluiceError

# Eval fails (exit 1) below these macro scores on the held-out split: the
# floors the test suite asserts too.
TASK_FLOOR = 0.65
COMPLEXITY_FLOOR = 0.60


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of USD: {text!r}")
    return value


# The top-level commands this module adds (sluice.runtime.cli dispatches them here).
COMMANDS = ("routing",)


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("routing", help="train and score the task classifier, replay and compare policies"
                           ).add_subparsers(dest="action", required=True)
    cmd = group.add_parser("train", help="fit the task classifier on the labelled corpus and write its artifact")
    cmd.add_argument("--corpus", default=str(clf.CORPUS), help="folder of *.jsonl corpus files")
    cmd.add_argument("--out", default=str(clf.ARTIFACT), help="artifact path without suffix (.npz + .json)")
    cmd.add_argument("--version", help="artifact version (default: tasks-<date>-<corpus hash>)")
    cmd = group.add_parser("eval", help="score the classifier on the corpus's held-out split")
    cmd.add_argument("--corpus", default=str(clf.CORPUS), help="folder of *.jsonl corpus files")
    cmd.add_argument("--json", action="store_true", help="print the scores as JSON")
    cmd = group.add_parser("replay", help="run the router over a trace of requests and print what it chose")
    cmd.add_argument("trace", help="JSON lines: {request, label?, usage?, latency?}, billing records, or corpus lines")
    cmd.add_argument("--policy", help="routing policy to replay (default: the alias's, experiments included)")
    cmd.add_argument("--policies", help="routing policies file to replay (a candidate version; default: "
                     "routing.policies_path or the built-in file)")
    cmd.add_argument("--alias", default="auto", help="routing alias the requests name (default auto)")
    cmd.add_argument("--customer-tier", default="enterprise", help="the tenant tier replayed (default enterprise)")
    cmd.add_argument("--target", type=_positive, help="cost target per request, USD (default routing.cost_target_usd)")
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    cmd = group.add_parser("report", help="compare experiment arms from the sink's billing records")
    cmd.add_argument("--tenant", help="only this tenant (default: all)")
    cmd.add_argument("--experiment", help="only this experiment (default: all)")
    cmd.add_argument("--data-dir", help="storage root (default: sinks.data_dir)")
    cmd.add_argument("--region", help="the region whose storage to read (default: the `region` setting)")


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO,
        provided: dict[str, Any] | None = None) -> int:
    """Runs one `sluice routing` command. `report` reads the sink's billing
    records through `provided["billing_events"]` (the sinks service owns
    their storage and lends its reader; see sluice.runtime.cli)."""
    try:
        if args.action in ("train", "eval"):
            try:
                import sklearn  # noqa: F401 - only to say what is missing
            except ImportError:
                err.write("sluice: `sluice routing train` and `eval` fit the classifier with scikit-learn: "
                          "pip install 'sluice[train]' (make install has it)\n")
                return 2
        if args.action == "train":
            return _train(args, out)
        if args.action == "eval":
            return _eval(args, out)
        if args.action == "replay":
            return _replay(args, settings, out, err)
        read = (provided or {}).get("billing_events")
        billing = read(args.data_dir or settings.sinks.data_dir, args.region or settings.region, args.tenant) \
            if read is not None else None
        return _report(args, billing, out, err)
    except (ValueError, OSError, ConfigError) as exc:
        err.write(f"sluice: {exc}\n")
        return 2


# -- train and eval -------------------------------------------------------------------


def held_out_scores(corpus: Path) -> tuple[clf.TaskClassifier, clf.Scores, clf.Scores, list[clf.Example]]:
    """A classifier fitted on the corpus's training split, its (task,
    complexity) scores on the held-out split, and the held-out examples.
    Deterministic: the same corpus gives the same weights."""
    examples, digest = clf.read_corpus(corpus)
    train, test = clf.split(examples)
    model = clf.train(train, digest, "held-out")
    tasks, complexity = clf.evaluate(model, test)
    return model, tasks, complexity, test


def trace_line(example: clf.Example) -> dict[str, Any]:
    """A held-out corpus line as a replay trace line: the request it stands
    for and its labels."""
    entry = example.entry
    return {"id": entry.get("id"), "request": feats.corpus_request(entry),
            "label": {"task": entry["task"], "complexity": entry["complexity"], "tier": entry["tier"]}}


def _train(args: argparse.Namespace, out: TextIO) -> int:
    """Fits on the training split (the held-out split stays unseen: its
    scores, in the card, are the shipped model's), writes the artifact and
    the held-out split as the labelled replay trace."""
    corpus = Path(args.corpus)
    examples, digest = clf.read_corpus(corpus)
    model, tasks, complexity, test = held_out_scores(corpus)
    version = args.version or f"tasks-{datetime.now(UTC):%Y%m%d}-{digest[:8]}"
    model.version = model.card["version"] = version
    model.card["held_out"] = {"train": len(examples) - len(test), "test": len(test), "task": tasks.as_dict(),
                              "complexity": complexity.as_dict()}
    model.card["languages"] = dict(Counter(str(e.entry.get("lang", "?")) for e in examples).most_common())
    out_stem = Path(args.out)
    clf.save(model, out_stem)
    trace = out_stem.parent / "trace-heldout.jsonl"
    arrivals = sorted(test, key=lambda e: str(e.entry.get("id")))
    random.Random(15).shuffle(arrivals)  # tasks mixed as traffic arrives, the same order on every machine
    trace.write_text("".join(json.dumps(trace_line(e), ensure_ascii=False) + "\n" for e in arrivals),
                     encoding="utf-8")
    out.write(f"classifier {version}: trained on {len(examples) - len(test)} of {len(examples)} prompts (corpus "
              f"sha256 {digest[:16]}...), {model.card['vocabulary']} features -> {out_stem}.npz\n"
              f"held-out ({len(test)} prompts, -> {trace}): task macro precision {tasks.macro_precision:.3f} "
              f"recall {tasks.macro_recall:.3f}; complexity macro precision {complexity.macro_precision:.3f} "
              f"recall {complexity.macro_recall:.3f}\n")
    return 0


def _eval(args: argparse.Namespace, out: TextIO) -> int:
    model, tasks, complexity, test = held_out_scores(Path(args.corpus))
    n_train, n_test = int(model.card["examples"]), len(test)
    if args.json:
        out.write(json.dumps({"train": n_train, "test": n_test, "task": tasks.as_dict(),
                              "complexity": complexity.as_dict()}, indent=2) + "\n")
    else:
        out.write(f"held-out split: {n_test} prompts (trained on {n_train})\n\ntask\n")
        out.write(clf.render(tasks))
        out.write("\ncomplexity\n")
        out.write(clf.render(complexity))
    ok = (min(tasks.macro_precision, tasks.macro_recall) >= TASK_FLOOR
          and min(complexity.macro_precision, complexity.macro_recall) >= COMPLEXITY_FLOOR)
    if not ok:
        out.write(f"\nBELOW FLOOR: task macro P/R must be >= {TASK_FLOOR}, complexity >= {COMPLEXITY_FLOOR}\n")
    return 0 if ok else 1


# -- replay ---------------------------------------------------------------------------------

REPLAY_TENANT = "replay"


@dataclass
class ReplayResult:
    """What a replay found (see `render_replay`)."""

    requests: int = 0
    refused: int = 0
    cost_usd: float = 0.0
    top_cost_usd: float = 0.0
    tiers: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    arms: Counter = field(default_factory=Counter)
    labelled: int = 0
    tier_correct: int = 0
    complex_labelled: int = 0
    complex_below_top: int = 0
    below_floor: int = 0
    trajectory: list[tuple[int, float, float]] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    # Why lines were refused (the first few are printed).
    refusals: Counter = field(default_factory=Counter)

    @property
    def cost_per_request(self) -> float:
        return self.cost_usd / self.requests if self.requests else 0.0

    @property
    def saving(self) -> float:
        return 1 - self.cost_usd / self.top_cost_usd if self.top_cost_usd else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "refused": self.refused,
                "cost_per_request_usd": round(self.cost_per_request, 6),
                "all_top_cost_per_request_usd": round(self.top_cost_usd / max(self.requests, 1), 6),
                "saving": round(self.saving, 4), "tiers": dict(self.tiers), "models": dict(self.models),
                "reasons": dict(self.reasons), "arms": dict(self.arms),
                "tier_accuracy": round(self.tier_correct / self.labelled, 4) if self.labelled else None,
                "labelled_complex": self.complex_labelled, "labelled_complex_below_top": self.complex_below_top,
                "below_floor": self.below_floor, "refusals": list(self.refusals)[:20],
                "trajectory": [{"request": n, "cost_shift": round(s, 4), "average_usd": round(a, 6)}
                               for n, s, a in self.trajectory]}


def replay_router(settings: Settings, target: float | None = None) -> Router:
    """The router as the routing service builds it, with a controller of its own."""
    from sluice.routing.module import build_router

    cfg = settings.routing
    return build_router(settings, CostController(cfg.cost_controller_gain, export=False),
                        target if target is not None else cfg.cost_target_usd)


def read_trace(path: Path) -> Iterator[dict[str, Any]]:
    """The trace's lines. Raises ValueError naming a line that is not a JSON object."""
    for _where, entry in clf.json_lines(path.read_text(encoding="utf-8"), str(path)):
        yield entry


def replay(router: Router, entries: Iterator[dict[str, Any]], alias: str = "auto", policy: str | None = None,
           customer_tier: str = "enterprise", points: int = 10) -> ReplayResult:
    """Routes each trace entry through `router` (module doc). An entry is
    {"request": <Messages body>, "label": {"tier"?, "complexity"?}?,
    "usage": {"input_tokens", "output_tokens"}?, "latency": {dep: {"ttft_ms"}}?},
    a billing record ({"request": <RequestSummary with route>}), or a corpus
    line ({"text", "tier", ...})."""
    principal = principal_pb2.Principal(tenant_id=REPLAY_TENANT, tier=customer_tier, region=router.region)
    requested = alias
    if policy is not None:
        principal.routing_aliases["replayed"] = policy
        requested = "replayed"
    result = ReplayResult()
    lines = list(entries)
    every = max(len(lines) // points, 1)
    top = _top_model(router, policy or _alias_policy(router, alias))
    for n, entry in enumerate(lines, 1):
        try:
            decision, candidate, usage, label = _replay_one(router, principal, requested, entry)
        except SluiceError as err:
            result.refused += 1
            result.refusals[f"line {n}: {err.message}"[:200]] += 1
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            result.refused += 1
            result.refusals[f"line {n}: not a trace line ({type(exc).__name__}: {exc})"[:200]] += 1
            continue
        result.requests += 1
        result.cost_usd += decision.estimated_cost_usd if usage is None else _priced(candidate.prices, usage)
        result.top_cost_usd += _top_cost(top, decision, usage, router)
        result.tiers[decision.tier] += 1
        result.models[candidate.model_id] += 1
        result.reasons[decision.reason] += 1
        if decision.arm:
            result.arms[decision.arm] += 1
        if decision.tier and decision.floor and rank(decision.tier) < rank(decision.floor):
            result.below_floor += 1
        tier_label = label.get("tier")
        if tier_label in clf.TIERS:
            result.labelled += 1
            result.tier_correct += tier_label == decision.tier
            if tier_label == "top" or label.get("complexity") == "high":
                result.complex_labelled += 1
                result.complex_below_top += decision.tier != "top"
        observed = entry.get("latency")
        if isinstance(observed, dict) and isinstance(observed.get(candidate.deployment), dict):
            ttft = observed[candidate.deployment].get("ttft_ms")
            if isinstance(ttft, (int, float)):
                result.ttft_ms.append(float(ttft))
        if n % every == 0 or n == len(lines):
            result.trajectory.append((n, router.controller.shift((DEPLOYMENT,)),
                                      router.controller.average(DEPLOYMENT)))
    return result


def _replay_one(router: Router, principal: principal_pb2.Principal, requested: str, entry: dict[str, Any]
                ) -> tuple[decision_pb2.RouteDecision, Any, messages_pb2.Usage | None, dict[str, Any]]:
    """(decision, first candidate, the usage the trace reports or None, labels) of one line."""
    given = entry.get("label")
    label: dict[str, Any] = given if isinstance(given, dict) else {}
    request = entry.get("request")
    if isinstance(request, dict) and "route" in request and "messages" not in request:
        return _replay_billing(router, principal, request) + ({},)
    if isinstance(entry.get("text"), str):  # a corpus line
        request = feats.corpus_request(entry)
        label = {"tier": entry.get("tier"), "complexity": entry.get("complexity")}
    if not isinstance(request, dict):
        raise SluiceError.bad_request("request", "a trace line needs a request, a billing record or a text")
    body = json.dumps({**request, "model": requested}).encode("utf-8")
    asked = request.get("max_tokens")
    max_tokens = asked if isinstance(asked, int) else 1024
    candidates, _model, decision = router.route(principal, requested, max_tokens,
                                                request=wire_pb2.WireRequest(body=body))
    usage = entry.get("usage")
    return decision, candidates[0], _usage(usage) if isinstance(usage, dict) else None, label


def _tokens(usage: dict[str, Any], name: str) -> int:
    """A token count of a trace line (a number, or a string of digits: the
    sinks' JSON writes 64-bit integers as strings, as proto3 JSON does);
    raises ValueError for anything but a whole number from 0."""
    value = usage.get(name, 0)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value


def _usage(fields: dict[str, Any]) -> messages_pb2.Usage:
    """The tokens a trace line or billing record reports. Raises ValueError (see _tokens)."""
    return messages_pb2.Usage(input_tokens=_tokens(fields, "input_tokens"),
                              output_tokens=_tokens(fields, "output_tokens"),
                              cache_read_input_tokens=_tokens(fields, "cache_read_input_tokens"))


def _priced(prices: Any, usage: messages_pb2.Usage) -> float:
    """USD of reported usage at these prices (cache reads at the cache-read price)."""
    return estimate_cost(prices, usage.input_tokens + usage.cache_read_input_tokens, usage.output_tokens,
                         usage.cache_read_input_tokens)


def _replay_billing(router: Router, principal: principal_pb2.Principal, summary: dict[str, Any]
                    ) -> tuple[decision_pb2.RouteDecision, Any, messages_pb2.Usage]:
    """A billing record: its recorded prediction and features, re-decided."""
    route = summary["route"]
    if not isinstance(route, dict):
        raise ValueError("request.route must be an object (a billing record's routing decision)")
    task, complexity = route.get("task"), route.get("complexity")
    if task not in clf.TASKS or complexity not in clf.COMPLEXITIES:
        raise SluiceError.bad_request("route", "billing record without a policy decision")
    p = float(route.get("complexity_confidence", 1.0))
    prediction = clf.Prediction(task, float(route.get("task_confidence", 1.0)), complexity, p, p)
    features = feats.Features(int(route.get("prompt_tokens", 0) or summary.get("input_tokens", 0)),
                              bool(route.get("tools")), bool(route.get("media")), bool(route.get("thinking")),
                              int(route.get("turns", 1)), ())
    decision = decision_pb2.RouteDecision(requested=str(route.get("requested", "")))
    policy = principal.routing_aliases.get("replayed") or route.get("policy") or ""
    candidates, _model = router.decide(principal, policy, prediction, features, 0, False, decision, observe=False)
    usage = _usage(summary)
    router.controller.observe(DEPLOYMENT, router.cost_target_usd, _priced(candidates[0].prices, usage))
    return decision, candidates[0], usage


def _alias_policy(router: Router, alias: str) -> str:
    assert router.policies is not None
    return router.policies.aliases.get(alias, "auto")


def _top_model(router: Router, policy: str) -> Any:
    assert router.policies is not None
    for model_id in router.policies.policies[policy].tiers["top"]:
        model = router.catalog.lookup(model_id)
        if model is not None and router.deployments.serving(model, router.region):
            return model
    raise ValueError(f"policy {policy} has no top-tier model in region {router.region}")


def _top_cost(model: Any, decision: decision_pb2.RouteDecision, usage: messages_pb2.Usage | None,
              router: Router) -> float:
    """What the request would have cost on the top tier's model: its
    reported usage, else its estimate (the task's expected output)."""
    if usage is not None:
        return _priced(model.prices, usage)
    assert router.policies is not None
    policy = router.policies.policies.get(decision.policy)
    output = policy.tasks[decision.task].output_tokens if policy is not None else 0
    return estimate_cost(model.prices, decision.prompt_tokens, output)


def render_replay(result: ReplayResult, title: str) -> str:
    lines = [title, f"requests {result.requests}" + (f" (refused {result.refused})" if result.refused else "")]
    lines += [f"  refused: {why}" for why in list(result.refusals)[:5]]
    lines.append("tier      share")
    for tier in clf.TIERS:
        lines.append(f"{tier:<9} {result.tiers[tier] / max(result.requests, 1):6.1%}")
    lines.append("model                share")
    for model, n in result.models.most_common():
        lines.append(f"{model:<20} {n / max(result.requests, 1):6.1%}")
    lines.append("reason     " + ", ".join(f"{k} {v}" for k, v in result.reasons.most_common()))
    if result.arms:
        lines.append("arms       " + ", ".join(f"{k} {v}" for k, v in result.arms.most_common()))
    lines.append(f"blended cost per request   USD {result.cost_per_request:.6f}")
    lines.append(f"all-top-tier per request   USD {result.top_cost_usd / max(result.requests, 1):.6f}")
    lines.append(f"saving against all-top     {result.saving:6.1%}")
    if result.labelled:
        lines.append(f"tier accuracy vs labels    {result.tier_correct / result.labelled:6.1%} "
                     f"({result.labelled} labelled)")
        lines.append(f"labelled complex below top {result.complex_below_top} of {result.complex_labelled}")
    lines.append(f"below a task's floor       {result.below_floor}")
    if result.ttft_ms:
        lines.append(f"observed TTFT p50          {statistics.median(result.ttft_ms):.0f} ms")
    lines.append("controller: request  cost_shift  average USD (exponential, about the last 500)")
    lines += [f"            {n:>7}  {s:10.3f}  {a:.6f}" for n, s, a in result.trajectory]
    return "\n".join(lines) + "\n"


def _replay(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    if args.policies:
        settings = settings.model_copy(update={"routing": settings.routing.model_copy(
            update={"policies_path": args.policies})})
    router = replay_router(settings, args.target)
    assert router.policies is not None
    if args.policy and args.policy not in router.policies.policies:
        err.write(f"sluice: no routing policy {args.policy!r} in {router.policies.source}\n")
        return 2
    if not args.policy and args.alias not in router.policies.aliases:
        err.write(f"sluice: no routing alias {args.alias!r} in {router.policies.source}\n")
        return 2
    result = replay(router, read_trace(Path(args.trace)), args.alias, args.policy, args.customer_tier)
    if args.json:
        out.write(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        out.write(render_replay(result, f"replay of {args.trace}: policy {args.policy or args.alias}, "
                                f"target USD {router.cost_target_usd}"))
    return 0


# -- report: experiment arms from billing records --------------------------------------------


@dataclass
class ArmLine:
    experiment: str
    arm: str
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0
    total_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)


def compare_arms(events: Iterator[dict[str, Any]], experiment: str | None = None) -> list[ArmLine]:
    """One line per (experiment, arm) of the billing records that carry one."""
    lines: dict[tuple[str, str], ArmLine] = defaultdict(lambda: ArmLine("", ""))
    for event in events:
        summary = event.get("request", {})
        route = summary.get("route") or {}
        name, arm = route.get("experiment"), route.get("arm")
        if not name or not arm or (experiment and name != experiment):
            continue
        line = lines[(name, arm)]
        line.experiment, line.arm = name, arm
        line.requests += 1
        line.errors += summary.get("outcome") == "OUTCOME_ERROR"
        line.fallbacks += bool(summary.get("fallbacks"))
        line.cost_usd += float(summary.get("cost_usd", 0.0))
        line.total_ms.append(float(summary.get("total_ms", 0.0)))
        if summary.get("time_to_first_token_ms"):
            line.ttft_ms.append(float(summary["time_to_first_token_ms"]))
    return [lines[k] for k in sorted(lines)]


def render_arms(lines: list[ArmLine]) -> str:
    header = (f"{'experiment':<20} {'arm':<14} {'requests':>8} {'USD/request':>12} {'p50 ms':>8} {'p50 TTFT':>9} "
              f"{'errors':>7} {'fallback':>8}")
    out = [header]
    for line in lines:
        out.append(f"{line.experiment:<20} {line.arm:<14} {line.requests:>8} "
                   f"{line.cost_usd / max(line.requests, 1):>12.6f} "
                   f"{statistics.median(line.total_ms) if line.total_ms else 0:>8.0f} "
                   f"{statistics.median(line.ttft_ms) if line.ttft_ms else 0:>9.0f} "
                   f"{line.errors / max(line.requests, 1):>7.1%} {line.fallbacks / max(line.requests, 1):>8.1%}")
    return "\n".join(out) + "\n"


def _report(args: argparse.Namespace, billing: Iterator[dict[str, Any]] | None, out: TextIO, err: TextIO) -> int:
    if billing is None:
        err.write("sluice: no billing records to read (see --data-dir, --region)\n")
        return 2
    lines = compare_arms(billing, args.experiment)
    if not lines:
        out.write("no billing records with an experiment arm\n")
        return 0
    out.write(render_arms(lines))
    return 0


def check_config(settings: Settings) -> str:
    """`sluice check-config`'s routing part: builds the router the service would (catalog,
    deployments, policies, classifier) and checks every tenant's routing settings against them.
    Returns what was loaded; raises ConfigError or ValueError naming every problem."""
    from sluice.routing.module import build_router
    from sluice.routing.policy import check_tenants

    router = build_router(settings)
    assert router.policies is not None and router.classifier is not None
    problems = check_tenants(router.policies, router.catalog,
                             {t: tenant.routing for t, tenant in settings.auth.tenants.items()}, settings.auth.tiers)
    if problems:
        raise ConfigError("\n  ".join(["routing settings:", *problems]))
    return (f"catalog {router.catalog.version}, deployments {router.deployments.version}, "
            f"routing policies {router.policies.version}, classifier {router.classifier.version}")
