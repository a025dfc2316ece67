"""`make run`: the embedded defaults start and the first requests (a named
model, then `auto`) are shown; the sink it runs on the local spool stores
their events, so `sluice audit verify` and `sluice billing report` work right
away. Run as `make run` does (its targets read from the Makefile), on
deploy/config/local.yaml with its ports, spool and sink storage moved to
free ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from sluice.events.spool import pending_records
from sluice.sinks.storage import RegionalStore
from tests.e2e.helpers import wait_until
from tests.infra.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
# The first requests: a named model, `auto`, and one asked twice (a cache miss, then a hit).
FIRST_REQUESTS = 4


def _make_run_args() -> list[str]:
    """What `make run` passes to `sluice` after `--config`: `serve <targets> ...`."""
    recipe = re.search(r"^run:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "no run target in the Makefile"
    args = recipe.group(1).split()
    return args[args.index("serve"):]


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice.runtime.cli", "--config", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_make_run_starts_everything_and_shows_a_named_and_an_auto_request(tmp_path):
    config = yaml.safe_load((ROOT / "deploy/config/local.yaml").read_text())
    sim, http = free_port(), free_port()
    config["services"]["gateway"] = {"grpc": f"127.0.0.1:{free_port()}", "metrics": f"127.0.0.1:{free_port()}"}
    config["gateway"]["http_listen"] = f"127.0.0.1:{http}"
    config["simulator"]["listen"] = f"127.0.0.1:{sim}"
    config["inference"]["simulator_url"] = f"http://127.0.0.1:{sim}"
    assert not config.get("events", {}).get("kafka_bootstrap"), "make run has no Kafka"
    spool_dir, data_dir = tmp_path / "spool", tmp_path / "sinks"
    config["events"]["spool_dir"] = str(spool_dir)
    config["sinks"]["data_dir"] = str(data_dir)
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config))
    args = _make_run_args()
    assert "sinks" in args[1].split(",") and "--first-request" in args, args
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sluice.runtime.cli", "--config", str(path), *args], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def shown() -> bool:
            assert proc.poll() is None, log.read_text()
            return "Press Ctrl-C to stop." in log.read_text()

        wait_until(shown, 60, "the first requests")
        text = log.read_text()
        assert "First request failed" not in text and "Traceback" not in text, text
        assert "model=claude-sonnet-4-6" in text
        assert "Routed by task (model=auto): model=claude-haiku-4-5" in text
        assert "x-sluice-route: policy=auto; version=2; task=simple_qa; complexity=low; tier=fast" in text
        assert "Response cache (x-sluice-cache: read-write), asked twice: miss, then hit (from request" in text
        assert f"Sink            region local: local spool {spool_dir / 'local'} (no Kafka)" in text, text

        # The sink stores the first requests' events from the spool, and acknowledges them there.
        store = RegionalStore(data_dir, "local")

        def stored(kind: str) -> list[dict]:
            return list(store.events(kind)) if store.root.exists() else []

        wait_until(lambda: len(stored("audit")) >= FIRST_REQUESTS and len(stored("billing")) >= FIRST_REQUESTS,
                   30, f"the sink to store {FIRST_REQUESTS} audit and billing records")
        audit, billing = stored("audit"), stored("billing")
        assert len(audit) == len(billing) == FIRST_REQUESTS
        assert {e["request"]["tenant_id"] for e in audit + billing} == {"demo"}
        assert len({e["event_id"] for e in billing}) == FIRST_REQUESTS
        wait_until(lambda: not pending_records(spool_dir / "local"), 30, "the spool to be acknowledged")

        # What a user runs in another shell.
        verify = _cli(path, "audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert verify.stdout.startswith(f"audit verification ok: {FIRST_REQUESTS} record(s) in "), verify.stdout
        per_file = re.findall(r"^  demo  \d{4}-\d\d-\d\d  (\d+) record\(s\)$", verify.stdout, re.MULTILINE)
        assert sum(map(int, per_file)) == FIRST_REQUESTS, verify.stdout

        output_tokens = sum(int(e["request"].get("output_tokens", 0)) for e in billing)
        input_tokens = sum(int(e["request"].get("input_tokens", 0)) for e in billing)
        cost = sum(float(e["request"].get("cost_usd", 0.0)) for e in billing)
        assert output_tokens > 0 and input_tokens > 0 and cost > 0
        for scope in ((), ("--tenant", "demo")):
            report = _cli(path, "billing", "report", *scope)
            assert report.returncode == 0, report.stdout + report.stderr
            daily, caching = report.stdout.split("\n\n")
            total = next(line for line in daily.splitlines() if line.startswith("total")).split()
            # total, requests, errors, input, output, cache write, cache read, cost
            assert total[1] == str(FIRST_REQUESTS), report.stdout
            assert (total[3], total[4], total[7]) == (str(input_tokens), str(output_tokens), f"{cost:.6f}"), \
                report.stdout
            tenants = [line.split() for line in caching.splitlines()[1:]]
            assert [row[0] for row in tenants] == ["demo", "total"], report.stdout
            assert tenants[0][1:3] == [str(FIRST_REQUESTS), "1"], report.stdout  # requests, response cache hits
    finally:
        stop_process(proc)  # SIGTERM: drains and exits 0
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
