"""Property-based conformance (hypothesis) against a running Sluice: any
valid request reaches the upstream with the JSON the client sent apart from
Sluice's declared edits (the model's upstream name first, "stream": true);
any invalid or hostile body is a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.wire import jsontext
from tests.e2e.conformance import V2023, V2026, last_received, post
from tests.unit.test_wire import _text, hostile, requests

pytestmark = pytest.mark.e2e

# Examples per mode: each is a real request through the whole system.
EXAMPLES = 40
_slow = settings(max_examples=EXAMPLES, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@_slow
@given(body=requests, version=st.sampled_from([V2023, V2026]))
def test_any_valid_request_reaches_the_upstream_as_sent(conf, body, version):
    raw = _text(body).encode()
    response = post(conf.http_base, conf.keys["raw"], raw, version)
    assert response.status_code < 500, response.text
    (arrived,) = last_received(conf)
    assert arrived["headers"]["anthropic-version"] == version
    sent = arrived["body"]
    members, _ = jsontext.object_members(sent)
    assert [m.key for m in members[:2]] == ["model", "stream"]
    client = {m.key: raw.decode()[m.value_start:m.end] for m in jsontext.object_members(raw.decode())[0]}
    upstream = {m.key: sent[m.value_start:m.end] for m in members[2:]}
    assert upstream == {k: v for k, v in client.items() if k not in ("model", "stream")}
    assert members[0].value == json.loads(raw)["model"] and members[1].value is True


@_slow
@given(raw=hostile)
def test_any_invalid_or_hostile_body_is_a_4xx_naming_the_field(conf, raw):
    response = post(conf.http_base, conf.keys["raw"], raw, V2023)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        return  # it was a valid request after all
    error = response.json()["error"]
    assert 400 <= response.status_code < 500 and error["type"] in (
        "invalid_request_error", "not_found_error", "request_too_large")
    field = error["message"].split(":", 1)[0]
    assert (field and " " not in field.strip("() ")) or error["message"].startswith(("This model", "prompt is")), error
