"""deploy/grafana/sluice-overview.json: a valid Grafana dashboard model whose every query reads series
Sluice exports (or the alert rules record), per region."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import promql

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "sluice-overview.json"
DATASOURCE = "${datasource}"
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*([A-Za-z_]\w*)\s*\)\s*$")


@pytest.fixture(scope="module")
def model() -> dict:
    return json.loads(DASHBOARD.read_text())  # a JSONDecodeError fails every test


def _panels(model: dict) -> Iterator[dict]:
    """Every panel, those inside collapsed rows included."""
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _targets(model: dict) -> Iterator[tuple[dict, dict]]:
    for panel in _panels(model):
        for target in panel.get("targets", []):
            yield panel, target


def test_dashboard_model_keys(model: dict) -> None:
    for key, kind in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list),
                      ("templating", dict), ("time", dict), ("tags", list), ("annotations", dict)):
        assert isinstance(model.get(key), kind), f"dashboard {key!r} missing or not a {kind.__name__}"
    assert model["schemaVersion"] >= 36, "schemaVersion older than Grafana 9"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", model["uid"]), "uid: at most 40 letters, digits, - or _"
    assert model.get("id") is None, "a provisioned dashboard has no database id"
    assert {"from", "to"} <= set(model["time"])


def test_panels_have_unique_ids_and_fit_the_grid(model: dict) -> None:
    ids = [panel.get("id") for panel in _panels(model)]
    assert all(isinstance(i, int) for i in ids), "every panel needs an integer id"
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in _panels(model):
        assert panel.get("type") and panel.get("title"), f"panel {panel['id']}: type and title"
        grid = panel.get("gridPos", {})
        assert all(isinstance(grid.get(k), int) for k in "hwxy"), f"panel {panel['id']}: gridPos h, w, x, y"
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, f"panel {panel['id']}: width"


def test_query_panels_use_the_datasource_variable(model: dict) -> None:
    for panel in _panels(model):
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
        targets = panel.get("targets") or []
        assert targets, f"{panel['title']}: no queries"
        ref_ids = [target.get("refId") for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']}: duplicate refIds"
        for target in targets:
            assert target.get("datasource", {}).get("uid") in (None, DATASOURCE), panel["title"]
            assert target.get("expr", "").strip(), f"{panel['title']} / {target.get('refId')}: no expr"


def test_every_query_reads_series_sluice_exports(model: dict) -> None:
    known = promql.recorded()
    problems = []
    for panel, target in _targets(model):
        problems += [f"{panel['title']} / {target['refId']}: {problem}"
                     for problem in promql.check_expr(target["expr"], known)]
    assert not problems, "\n".join(problems)


def test_every_query_selects_the_region_variable(model: dict) -> None:
    problems = []
    for panel, target in _targets(model):
        expr = target["expr"]
        with_region = {name for name, labels in promql.selectors(expr) if "region" in labels}
        for name in sorted(promql.metric_names(expr) - with_region):
            problems.append(f"{panel['title']} / {target['refId']}: {name} not filtered by region")
        if '$region' not in expr:
            problems.append(f"{panel['title']} / {target['refId']}: does not use $region")
    assert not problems, "\n".join(problems)


def test_variables(model: dict) -> None:
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    datasource = variables.get("datasource")
    assert datasource and datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    region = variables.get("region")
    assert region and region["type"] == "query", "a `region` query variable"
    assert region.get("datasource", {}).get("uid") == DATASOURCE
    query = region["query"]["query"] if isinstance(region["query"], dict) else region["query"]
    match = _LABEL_VALUES.match(query)
    assert match, f"region variable query {query!r} is not label_values(metric, label)"
    metric, label = match.groups()
    assert label == "region"
    assert metric in promql.exported(), f"{metric} is not a series Sluice exports"
    assert region.get("multi") and region.get("includeAll"), "pick one region, several or all"


def test_the_dashboard_covers_the_issue(model: dict) -> None:
    """Issue 18: traffic, errors, latency and TTFT, overhead, cost and blended cost per request,
    cache savings, routing shares, breakers and shedding."""
    read = set()
    for _, target in _targets(model):
        read |= promql.metric_names(target["expr"])
    wanted = {
        "traffic": "sluice_gateway_requests_total",
        "latency": "sluice_gateway_request_duration_seconds_bucket",
        "time to first token": "region:sluice_gateway_time_to_first_token_seconds:p99_5m",
        "overhead": "region:sluice_gateway_overhead_seconds:p99_5m",
        "cost": "sluice_gateway_cost_usd_total",
        "blended cost per request": "region:sluice_gateway_request_cost_usd:avg1h",
        "cost target": "region:sluice_cost_per_request_target_usd:max",
        "cache savings": "sluice_cache_saved_usd_total",
        "routing shares": "sluice_route_decisions_total",
        "deployment shares": "sluice_upstream_attempts_total",
        "breakers": "sluice_deployment_breaker_state",
        "shedding": "sluice_requests_shed_total",
    }
    missing = [f"{what} ({name})" for what, name in wanted.items() if name not in read]
    assert not missing, f"no panel shows: {', '.join(missing)}"
