"""`make run`: the embedded defaults start and the first requests (a named
model, then `auto`) are shown. Run as `make run` does, on
deploy/config/local.yaml with its ports moved to free ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.infra.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_starts_everything_and_shows_a_named_and_an_auto_request(tmp_path):
    config = yaml.safe_load((ROOT / "deploy/config/local.yaml").read_text())
    sim, http = free_port(), free_port()
    config["services"]["gateway"] = {"grpc": f"127.0.0.1:{free_port()}", "metrics": f"127.0.0.1:{free_port()}"}
    config["gateway"]["http_listen"] = f"127.0.0.1:{http}"
    config["simulator"]["listen"] = f"127.0.0.1:{sim}"
    config["inference"]["simulator_url"] = f"http://127.0.0.1:{sim}"
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sluice.runtime.cli", "--config", str(path), "serve",
                                 "all,simulator", "--first-request"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while "Press Ctrl-C to stop." not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "Press Ctrl-C to stop." in text, text
        assert "First request failed" not in text and "Traceback" not in text, text
        assert "model=claude-sonnet-4-6" in text
        assert "Routed by task (model=auto): model=claude-haiku-4-5" in text
        assert "x-sluice-route: policy=auto; version=2; task=simple_qa; complexity=low; tier=fast" in text
        assert "Response cache (x-sluice-cache: read-write), asked twice: miss, then hit (from request" in text
    finally:
        stop_process(proc)  # SIGTERM: drains and exits 0
    assert proc.returncode == 0, log.read_text()
