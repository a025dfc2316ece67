"""`sluice safety train | eval`: the injection model, rebuilt and scored.

- train: fits the learned injection model (`model.py`) on the training
  split of the corpus (`data/injection/*.jsonl`) and writes its artifact;
  the card records the corpus's SHA-256 and the held-out scores.
- eval: scores the shipped pack's injection rules, as a profile applies
  them (the learned model and the heuristics together), on the held-out
  split: detection per attack kind, false positives per benign kind, and
  the same for each classifier alone; and every PII and secret detector's
  precision and recall on the PII corpus (`data/pii_corpus.yaml`). Exit 1
  below the floors.

The floors are the ones CI asserts (tests/unit/test_safety_eval.py,
tests/unit/test_pii_detectors.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sluice.safety import model as mdl
from sluice.safety.detectors import Text
from sluice.safety.engine import check_input
from sluice.safety.policy import SHIPPED_POLICY_DIR, load_policy
from sluice.wire.request import MessagesRequest

# What CI holds the shipped pack's default profile to on the held-out split.
# They guard what was reached (see the README's figures), below the
# 0.92 / 0.03 the project aims at.
DETECTION_FLOOR = 0.66
FALSE_POSITIVE_CEILING = 0.03
# The rules of a profile that judge attacks on the model's instructions.
INJECTION_RULES = ("injection.", "jailbreak.")
PII_CORPUS = mdl.DATA / "pii_corpus.yaml"
PII_FLOOR = {"precision": 0.97, "recall": 0.95}
PII_KINDS = ("email", "phone", "payment_card", "us_ssn", "iban", "ip_address", "date_of_birth", "secret")


# The top-level commands this module adds (sluice.runtime.cli dispatches them here).
COMMANDS = ("safety",)


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("safety", help="rebuild and score the prompt-injection model"
                           ).add_subparsers(dest="action", required=True)
    cmd = group.add_parser("train", help="fit the injection model on the corpus's training split")
    cmd.add_argument("--corpus", default=str(mdl.CORPUS), help="folder of *.jsonl corpus files")
    cmd.add_argument("--out", default=str(mdl.ARTIFACT), help="artifact path without suffix (.npz + .json)")
    cmd.add_argument("--version", help="artifact version (default: injection-<date>-<corpus hash>)")
    cmd = group.add_parser("eval", help="score the policy's injection rules on the held-out split")
    cmd.add_argument("--corpus", default=str(mdl.CORPUS), help="folder of *.jsonl corpus files")
    cmd.add_argument("--policy-dir", default=str(SHIPPED_POLICY_DIR), help="policy folder (default: the shipped)")
    cmd.add_argument("--profile", default="default", help="the profile whose rules are scored")
    cmd.add_argument("--json", action="store_true", help="print the scores as JSON")


def run(args: argparse.Namespace, settings: object, out: TextIO, err: TextIO,
        provided: dict[str, object] | None = None) -> int:
    """Runs one `sluice safety` command (train, eval); 2 on a usage error, 1 below the floors."""
    try:
        if args.action == "train":
            try:
                import sklearn  # noqa: F401 - only to say what is missing
            except ImportError:
                err.write("sluice: `sluice safety train` fits with scikit-learn: pip install 'sluice[train]'\n")
                return 2
            return _train(args, out)
        return _eval(args, out, err)
    except (ValueError, OSError) as exc:
        err.write(f"sluice: {exc}\n")
        return 2


def _train(args: argparse.Namespace, out: TextIO) -> int:
    cases, digest = mdl.read_corpus(Path(args.corpus))
    train, test = mdl.split(cases)
    version = args.version or f"injection-{datetime.now(UTC):%Y%m%d}-{digest[:8]}"
    fitted = mdl.train(train, digest, version)
    scores = [fitted.classify(c.text)[0] for c in test]
    fitted.card["held_out"] = {"cases": len(test), **_rates([c.attack for c in test], [s >= 0.5 for s in scores])}
    mdl.save(fitted, Path(args.out))
    out.write(f"wrote {args.out}.npz and .json ({version}: {len(train)} training cases, {len(test)} held out; "
              f"model alone at 0.5: {json.dumps(fitted.card['held_out'])})\n")
    return 0


@dataclass
class Report:
    """Detection (attack kinds) and false positives (benign kinds) on the held-out split."""

    profile: str
    policy_version: str
    model_version: str
    corpus_sha256: str
    overall: dict[str, float]
    by_kind: dict[str, dict[str, Any]]
    by_classifier: dict[str, dict[str, float]]
    pii: dict[str, dict[str, float]]

    @property
    def passed(self) -> bool:
        return (self.overall["detection"] >= DETECTION_FLOOR
                and self.overall["false_positive_rate"] <= FALSE_POSITIVE_CEILING
                and all(row["precision"] >= PII_FLOOR["precision"] and row["recall"] >= PII_FLOOR["recall"]
                        for row in self.pii.values()))


def evaluate(corpus: Path, policy_dir: Path, profile_name: str) -> Report:
    """Scores `profile_name`'s injection rules on the held-out split.
    Raises ValueError for an unknown profile or a damaged corpus."""
    cases, digest = mdl.read_corpus(corpus)
    _, test = mdl.split(cases)
    policy = load_policy(policy_dir)
    profile = policy.profile(profile_name, "")
    if profile is None:
        raise ValueError(f"profile {profile_name!r} is in no pack of {policy_dir}")
    rules = [r for r in profile.input_rules if r.id.startswith(INJECTION_RULES)]
    if not rules:
        raise ValueError(f"profile {profile_name!r} has no injection rules ({', '.join(INJECTION_RULES)}*)")
    judged = dataclasses.replace(profile, input_rules=tuple(rules))
    fired = [_fires(judged, c) for c in test]
    truth = [c.attack for c in test]
    by_kind: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[bool, str], list[bool]] = defaultdict(list)
    for case, hit in zip(test, fired, strict=True):
        groups[(case.attack, case.kind)].append(hit)
    for (attack, kind), hits in sorted(groups.items()):
        by_kind[f"{'attack' if attack else 'benign'}/{kind}"] = {
            "cases": len(hits), ("detection" if attack else "false_positive_rate"): round(sum(hits) / len(hits), 4)}
    by_classifier = {}
    shipped = mdl.loaded()
    if shipped is not None:
        by_classifier[mdl.NAME] = _rates(truth, [shipped.classify(c.text)[0] >= 0.5 for c in test])
    from sluice.safety.heuristics import CLASSIFIERS

    for name, classifier in CLASSIFIERS.items():
        by_classifier[name] = _rates(truth, [classifier.classify(c.text)[0] >= 0.5 for c in test])
    return Report(profile.name, profile.policy_version, shipped.version if shipped else "(none)", digest,
                  _rates(truth, fired), by_kind, by_classifier, pii_scores())


def pii_scores(corpus: Path = PII_CORPUS) -> dict[str, dict[str, float]]:
    """Per detector: precision, recall, support (labelled values), fp, fn on
    the PII corpus (each case: text, optional region, the values each
    detector must find; anything else found is a false positive)."""
    import yaml

    from sluice.safety.detectors import REGISTRY

    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for case in yaml.safe_load(corpus.read_text()):
        text = Text(case["text"], region=case.get("region"))
        for name in PII_KINDS:
            expected = Counter(case.get(name, []))
            found = Counter(f.value for f in REGISTRY[name].find(text))
            tp[name] += sum((expected & found).values())
            fp[name] += sum((found - expected).values())
            fn[name] += sum((expected - found).values())
    return {name: {"precision": round(tp[name] / max(tp[name] + fp[name], 1), 4),
                   "recall": round(tp[name] / max(tp[name] + fn[name], 1), 4),
                   "support": tp[name] + fn[name], "fp": fp[name], "fn": fn[name]} for name in PII_KINDS}


def _fires(profile: Any, case: mdl.Case) -> bool:
    """Whether the profile's injection rules block the case, sent as the
    request it stands for: an operator's system prompt as `system` (which
    the standard pack's injection rules do not read), anything else as the
    user's turn."""
    body: dict[str, Any] = {"model": "eval", "max_tokens": 1, "messages": [{"role": "user", "content": case.text}]}
    if case.kind == "system_prompt":
        body["system"], body["messages"][0]["content"] = case.text, "Hello"
    verdict, _ = check_input(profile, MessagesRequest(json.dumps(body).encode(), "2023-06-01",
                                                      count_tokens=True, exact=False))
    return bool(verdict.rule_ids)


def _rates(truth: list[bool], fired: list[bool]) -> dict[str, float]:
    attacks = sum(truth) or 1
    benign = (len(truth) - sum(truth)) or 1
    tp = sum(1 for t, f in zip(truth, fired, strict=True) if t and f)
    fp = sum(1 for t, f in zip(truth, fired, strict=True) if f and not t)
    return {"detection": round(tp / attacks, 4), "false_positive_rate": round(fp / benign, 4),
            "precision": round(tp / max(tp + fp, 1), 4)}


def render(report: Report) -> str:
    """The report as the text `sluice safety eval` prints."""
    lines = [f"profile {report.profile} of {report.policy_version}; model {report.model_version}; "
             f"corpus {report.corpus_sha256[:12]}",
             f"overall: detection {report.overall['detection']:.3f}, false positives "
             f"{report.overall['false_positive_rate']:.3f}, precision {report.overall['precision']:.3f} "
             f"(floors: detection >= {DETECTION_FLOOR}, false positives <= {FALSE_POSITIVE_CEILING})", "",
             f"{'kind':<32} {'cases':>5}  rate"]
    for kind, row in report.by_kind.items():
        rate = row.get("detection", row.get("false_positive_rate"))
        lines.append(f"{kind:<32} {row['cases']:>5}  {rate:.3f}")
    lines += ["", "each classifier alone at 0.5:"]
    for name, row in report.by_classifier.items():
        lines.append(f"  {name:<22} detection {row['detection']:.3f}  false positives {row['false_positive_rate']:.3f}")
    lines += ["", f"PII and secrets on {PII_CORPUS.name} (floors: precision >= {PII_FLOOR['precision']}, "
                  f"recall >= {PII_FLOOR['recall']})", f"{'detector':<16}{'precision':>10}{'recall':>8}{'values':>8}"
                  f"{'fp':>5}{'fn':>5}"]
    for name, row in report.pii.items():
        lines.append(f"{name:<16}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['support']:>8}{row['fp']:>5}"
                     f"{row['fn']:>5}")
    return "\n".join(lines) + "\n"


def _eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = evaluate(Path(args.corpus), Path(args.policy_dir), args.profile)
    if args.json:
        out.write(json.dumps({"profile": report.profile, "policy_version": report.policy_version,
                              "model_version": report.model_version, "overall": report.overall,
                              "by_kind": report.by_kind, "by_classifier": report.by_classifier, "pii": report.pii,
                              "passed": report.passed}, indent=2) + "\n")
    else:
        out.write(render(report))
    shipped = mdl.loaded()
    trained_on = shipped.card.get("corpus_sha256") if shipped is not None else None
    if trained_on != report.corpus_sha256:
        err.write(f"sluice: the injection model was trained on another corpus ({str(trained_on)[:12]}, this one is "
                  f"{report.corpus_sha256[:12]}): its held-out cases may have been in training; run "
                  "`sluice safety train`\n")
    if not report.passed:
        err.write("sluice: below the floors\n")
        return 1
    return 0

