"""deploy/prometheus: the rule file loads, every alert has promtool unit tests, and every series it
reads is one Sluice exports (or one the rules record).

`promtool check rules` and `promtool test rules` run with the promtool built from the Prometheus Go
module (tests/infra/go_tools.py: once per machine, a few minutes the first time).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy import promql

ROOT = Path(__file__).resolve().parents[2]
RULES = promql.RULES
TEST_FILES = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yaml"))
README = ROOT / "deploy" / "prometheus" / "README.md"


def _alerts() -> list[dict]:
    return [rule for rule in promql.rules() if "alert" in rule]


@pytest.fixture(scope="module")
def promtool() -> Path:
    from tests.infra.go_tools import GoToolError, ensure

    try:
        return ensure("promtool")  # waits for (or does) the one build per machine
    except GoToolError as exc:
        pytest.fail(f"cannot build promtool: {exc}")


def test_there_are_rules_and_tests() -> None:
    assert _alerts(), "no alerts in the rule file"
    assert TEST_FILES, "no promtool test files in deploy/prometheus/tests/"


@pytest.mark.timeout(1800)  # the first run on a machine builds promtool
def test_promtool_check_rules(promtool: Path) -> None:
    done = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda path: path.name)
def test_promtool_test_rules(promtool: Path, test_file: Path) -> None:
    done = subprocess.run([promtool, "test", "rules", test_file.name], cwd=test_file.parent,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_test_file_loads_the_rule_file_in_group_order() -> None:
    groups = [group["name"] for group in yaml.safe_load(RULES.read_text())["groups"]]
    for test_file in TEST_FILES:
        spec = yaml.safe_load(test_file.read_text())
        files = [(test_file.parent / name).resolve() for name in spec["rule_files"]]
        assert files == [RULES], f"{test_file.name} tests {files}, not {RULES}"
        # Without a full order promtool evaluates groups in random order: an alert may then read
        # its recording rule's value of the previous evaluation, and the test flakes.
        assert spec.get("group_eval_order") == groups, f"{test_file.name}: group_eval_order must be {groups}"


def _tested() -> dict[str, dict[str, int]]:
    """alertname -> {"fires": cases expecting it, "quiet": cases expecting no alert}."""
    seen: dict[str, dict[str, int]] = {}
    for test_file in TEST_FILES:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test") or []:
                counts = seen.setdefault(check["alertname"], {"fires": 0, "quiet": 0})
                counts["fires" if check.get("exp_alerts") else "quiet"] += 1
    return seen


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tested = _tested()
    problems = []
    for alert in _alerts():
        counts = tested.get(alert["alert"], {"fires": 0, "quiet": 0})
        if not counts["fires"]:
            problems.append(f"{alert['alert']}: no promtool case where it fires")
        if not counts["quiet"]:
            problems.append(f"{alert['alert']}: no promtool case where it does not fire")
    unknown = set(tested) - {alert["alert"] for alert in _alerts()}
    problems += [f"{name}: tested but not in the rule file" for name in sorted(unknown)]
    assert not problems, "\n".join(problems)


def test_alerts_have_severity_annotations_and_a_runbook_section() -> None:
    anchors = {re.sub(r"[^a-z0-9_ -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in README.read_text().splitlines() if line.startswith("#")}
    problems = []
    names = [alert["alert"] for alert in _alerts()]
    problems += [f"{name}: defined twice" for name in sorted({n for n in names if names.count(n) > 1})]
    for alert in _alerts():
        name = alert["alert"]
        if alert.get("labels", {}).get("severity") not in ("critical", "warning"):
            problems.append(f"{name}: severity label must be critical or warning")
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key} annotation")
        runbook = annotations.get("runbook", "")
        path, _, anchor = runbook.partition("#")
        if path != "deploy/prometheus/README.md" or anchor not in anchors:
            problems.append(f"{name}: runbook {runbook!r} is not a section of deploy/prometheus/README.md")
    assert not problems, "\n".join(problems)


def test_every_series_a_rule_reads_is_exported_by_sluice() -> None:
    known = promql.recorded()
    problems = []
    for rule in promql.rules():
        for problem in promql.check_expr(rule["expr"], known):
            problems.append(f"{rule.get('alert') or rule.get('record')}: {problem}")
    assert not problems, "\n".join(problems)


def test_recording_rules_are_not_named_like_sluice_series() -> None:
    clashes = promql.recorded() & set(promql.exported())
    assert not clashes, f"recording rules shadow exported series: {sorted(clashes)}"
    for name in promql.recorded():
        assert name.count(":") == 2, f"{name}: recorded series are named level:metric:operations"


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (region, le) (rate(a_bucket{status=~"5..", x="b_total"}[5m] offset 1h))', {"a_bucket"}),
    ("x:y:rate5m > bool on (region) group_left (tier) z unless ignoring (pod) w", {"x:y:rate5m", "z", "w"}),
    ("histogram_quantile(0.99, sum(rate(h_bucket[$__rate_interval])) without (pod)) > 1e3", {"h_bucket"}),
    ('sum(rate(c_total{region=~"$region"}[${__range}])) * 3600 or vector(0) # not_a_metric', {"c_total"}),
    ("max_over_time(g[2m:30s]) == 2 and Inf > NaN", {"g"}),
])
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


def test_selectors_report_labels_and_nameless_selectors() -> None:
    assert promql.selectors('a{region=~"$region", status!="200"} and {__name__="b"}') == [
        ("a", ("region", "status")), ("", ("__name__",))]
    assert promql.check_expr('sluice_gateway_requests_total{statuss="500"}', set()) == [
        "sluice_gateway_requests_total has no label statuss (it has "
        "['error_type', 'mode', 'route', 'status'])"]
