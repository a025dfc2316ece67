"""Helpers of the conformance suite: a Sluice cluster with tenants for each
case, scripted simulator answers, what the simulator received, SSE and
billing records.

Tenants: `acme` (the standard pack's default profile: its answers go
through the output filter), `raw` (a profile without output rules: its
answers stream byte for byte as the model sent them), `big` (enterprise
tier, for models only that tier may use), `tight` (2,000 tokens per
minute, for a request no wait can admit), `counter` (its own limits, for
count_tokens' accounting).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import httpx

from sluice.events.spool import pending_records
from sluice.events.v1 import events_pb2
from sluice.safety.policy import SHIPPED_POLICY_DIR
from tests.infra.sluice_cluster import UNREACHABLE_LIMITS, SluiceCluster

V2023, V2026 = "2023-06-01", "2026-10-21"
PING_INTERVAL_S = 0.4

PASSTHROUGH_PACK = """\
pack: conformance
version: "1"
rules:
  - id: passthrough.codename
    description: A codename that never reaches a model (input only), so the profile has a rule.
    applies: input
    match: {keywords: [blue falcon]}
    action: block
    severity: high
profiles:
  passthrough:
    description: No output rules; answers stream exactly as the model sent them.
    rules: [passthrough.*]
"""

TENANTS = {
    "acme": {"tier": "standard", "region": "local"},
    "raw": {"tier": "standard", "region": "local", "safety_profile": "passthrough"},
    "big": {"tier": "enterprise", "region": "local", "safety_profile": "passthrough"},
    "tight": {"tier": "standard", "region": "local", "safety_profile": "passthrough",
              "limits": {"tenant": {"tokens_per_minute": 2000}}},
    "counter": {"tier": "standard", "region": "local", "safety_profile": "passthrough",
                "limits": {"tenant": {"tokens_per_minute": 5000, "requests_per_minute": 600}}},
}


def start_cluster(mode: str, redis_url: str, workdir: Path) -> SluiceCluster:
    policies = workdir / "policies"
    policies.mkdir()
    for pack in Path(SHIPPED_POLICY_DIR).glob("*.yaml"):
        shutil.copy(pack, policies / pack.name)
    (policies / "conformance.yaml").write_text(PASSTHROUGH_PACK)
    return SluiceCluster(mode, redis_url, workdir, tenants=TENANTS, name=f"conformance-{mode}", overrides={
        "gateway": {"stream_ping_interval_seconds": PING_INTERVAL_S},
        # A silent model before its first token reaches the client as its
        # stream's start and pings after one ping interval.
        "inference": {"resilience": {"first_token_hold_seconds": PING_INTERVAL_S}},
        "safety": {"policy_dir": str(policies)},
        "auth": {"tiers": {"enterprise": {"tenant": UNREACHABLE_LIMITS, "key": UNREACHABLE_LIMITS}}},
    }).start()


def script(cluster: SluiceCluster, spec: dict[str, Any]) -> tuple[str, str]:
    """Registers a scripted answer; (its id, the marker that names it in a prompt)."""
    response = httpx.post(f"{cluster.simulator_base}/_sim/scripts", json=spec, timeout=10)
    assert response.status_code == 200, response.text
    sid = response.json()["id"]
    return sid, f"[[sim:script={sid}]]"


def received(cluster: SluiceCluster, sid: str) -> list[dict[str, Any]]:
    """What the simulator received for requests naming script `sid`, oldest first."""
    return httpx.get(f"{cluster.simulator_base}/_sim/requests", params={"script": sid}, timeout=10).json()


def last_received(cluster: SluiceCluster, n: int = 1) -> list[dict[str, Any]]:
    return httpx.get(f"{cluster.simulator_base}/_sim/requests", params={"last": n}, timeout=10).json()


def post(base: str, key: str, body: Any, version: str | None = V2023, betas: str | None = None,
         path: str = "/v1/messages", timeout: float = 30) -> httpx.Response:
    """Raw HTTP as a client without an SDK sends it: `body` as JSON (or bytes as given)."""
    headers = {"x-api-key": key, "content-type": "application/json"}
    if version is not None:
        headers["anthropic-version"] = version
    if betas:
        headers["anthropic-beta"] = betas
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{base}{path}", content=content, headers=headers, timeout=timeout)


def direct(cluster: SluiceCluster, body: Any, version: str | None = V2023, **kwargs: Any) -> httpx.Response:
    """The same request straight to the simulator."""
    return post(cluster.simulator_base, "sk-sim", body, version, **kwargs)


def sse(text: str) -> list[tuple[str, str]]:
    """(event type, data text) of each SSE event."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        kind = data = None
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].lstrip(" ")
        if kind is not None and data is not None:
            out.append((kind, data))
    return out


_MESSAGE_ID = re.compile(r'"id":"msg_[A-Za-z0-9_]+"')


def same_message_ids(text: str) -> str:
    """`text` with message ids made equal (each answer has its own)."""
    return _MESSAGE_ID.sub('"id":"msg_x"', text)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def billing_event(cluster: SluiceCluster, request_id: str) -> events_pb2.BillingEvent:
    """The billing event of one request, from the gateway's spool (no Kafka here)."""
    for record in pending_records(cluster.spool_dir / "local"):
        if record.kind == "billing":
            event = events_pb2.BillingEvent.FromString(record.value)
            if event.request.request_id == request_id:
                return event
    raise LookupError(f"no billing event for {request_id}")


def metric(cluster: SluiceCluster, name: str, **labels: str) -> float:
    """The value of one Prometheus sample of the gateway (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and \
                all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
