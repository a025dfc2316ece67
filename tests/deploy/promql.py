"""What Sluice exports and what a PromQL expression reads, for checking rules and dashboards.

`exported()` lists the series names a Sluice process exposes on /metrics (from the one registry in
sluice.telemetry.metrics), with the label names each carries. `metric_names(expr)` and
`selectors(expr)` read the metric names (and the label names of their matchers) out of a PromQL
expression, skipping functions, aggregations, keywords, grouping label lists, numbers, durations,
string literals and Grafana variables. Not a PromQL parser: enough for the expressions we write,
and strict where it is unsure (a selector without a metric name is reported, not guessed).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from sluice.telemetry import metrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "sluice-rules.yaml"

# Series Prometheus makes up itself, per scrape target or for alerts.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
# Labels a scraped series may carry besides its own: the ServiceMonitor's target labels (region is
# relabelled from the pod), and `exported_region` when a series' own region label clashes.
TARGET_LABELS = frozenset({"region", "exported_region", "instance", "job", "namespace", "pod",
                           "service", "container", "endpoint", "__name__"})

# Words that may stand where a metric name could, and are not one (compared in lower case).
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
                      "and", "or", "unless", "atan2", "inf", "nan"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
# A name not inside another word, a number (5m, 1e3), or a Grafana variable ($region).
_NAME = r"(?<![\w:.$])[A-Za-z_:][\w:]*"
_SELECTOR = re.compile(rf"({_NAME})?\s*\{{([^{{}}]*)\}}")
_IDENT = re.compile(_NAME)
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*""\s*')
_GRAFANA_BRACED = re.compile(r"\$\{[^{}]*\}")


@cache
def exported() -> dict[str, frozenset[str]]:
    """Every series name Sluice exposes -> the label names it carries (without target labels).
    Counters expose name_total, histograms name_bucket (with le), name_sum and name_count;
    the optional *_created series are left out (nothing should query them)."""
    labels_of = {wrapper._name: tuple(wrapper._labelnames)  # the family name, _total stripped
                 for wrapper in vars(metrics).values() if isinstance(wrapper, MetricWrapperBase)}
    names: dict[str, frozenset[str]] = {}
    for family in metrics.REGISTRY.collect():
        own = frozenset(labels_of.get(family.name, ()))
        if family.type == "counter":
            names[family.name + "_total"] = own
        elif family.type == "histogram":
            names[family.name + "_bucket"] = own | {"le"}
            names[family.name + "_sum"] = own
            names[family.name + "_count"] = own
        elif family.type == "summary":
            names[family.name] = own | {"quantile"}
            names[family.name + "_sum"] = own
            names[family.name + "_count"] = own
        elif family.type == "info":
            names[family.name + "_info"] = own
        else:
            names[family.name] = own
    return names


def rules() -> list[dict]:
    """Every rule (recording and alerting) of deploy/prometheus/sluice-rules.yaml."""
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def recorded() -> set[str]:
    """Series names the recording rules make: queries may read them like exported ones."""
    return {rule["record"] for rule in rules() if "record" in rule}


def _blank(expr: str) -> str:
    """`expr` with string literals emptied (to ""), comments dropped and Grafana's ${var} made a
    plain $var."""
    expr = _COMMENT.sub(" ", _STRING.sub('""', expr))
    return _GRAFANA_BRACED.sub("$var", expr)


def selectors(expr: str) -> list[tuple[str, tuple[str, ...]]]:
    """(metric name, label names matched) of every `name{...}` selector; the name is "" for a
    selector without one ({__name__=~...}), which callers should refuse."""
    found = []
    for match in _SELECTOR.finditer(_blank(expr)):
        name, body = match.group(1) or "", match.group(2)
        if name.lower() in KEYWORDS:
            name = ""  # `a unless {__name__="b"}`: the word before the brace is no metric name
        labels = []
        for part in (part for part in body.split(",") if part.strip()):
            matcher = _MATCHER.fullmatch(part)
            if matcher is None:
                raise ValueError(f"cannot read label matcher {part.strip()!r} in {expr!r}")
            labels.append(matcher.group(1))
        found.append((name, tuple(labels)))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads."""
    text = _blank(expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = _BRACKETS.sub(" ", text)  # range and subquery durations
    text = _GROUPING.sub(" ", text)  # by (...), on (...), group_left (...) label lists
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        if word.lower() in KEYWORDS:
            continue
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(word)
    return names


def check_expr(expr: str, recorded: set[str]) -> list[str]:
    """Problems with one expression: names neither exported by Sluice, made by Prometheus nor
    recorded by our rules, selectors without a metric name, and matchers on labels a Sluice
    series does not carry."""
    known = exported()
    problems = []
    for name in sorted(metric_names(expr)):
        if name not in known and name not in recorded and name not in PROMETHEUS_SERIES:
            problems.append(f"{name}: not a series Sluice exports or the rules record")
    for name, labels in selectors(expr):
        if not name:
            problems.append(f"a selector without a metric name in {expr!r}")
        elif name in known:
            unknown = sorted(set(labels) - known[name] - TARGET_LABELS)
            if unknown:
                problems.append(f"{name} has no label {', '.join(unknown)} (it has {sorted(known[name])})")
    return problems
