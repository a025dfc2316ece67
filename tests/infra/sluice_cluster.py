"""Sluice as real processes: `all` (one process) or a mesh (one per service),
with the simulator as upstream, each on free loopback ports."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.infra.ports import free_port, wait_for_port

MESH_SERVICES = ("auth", "safety", "cache", "routing", "inference", "gateway")


def _wait_serving(address: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"process for {address} exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING after {timeout}s")


@dataclass
class SluiceCluster:
    mode: str
    redis_url: str
    workdir: Path
    simulator_overrides: dict = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.api_key = f"sk-sluice-test{secrets.token_hex(4)}-{secrets.token_hex(24)}"
        ports = {name: free_port() for name in (*MESH_SERVICES, "simulator_grpc")}
        self.http_port = free_port()
        self.simulator_port = free_port()
        self.metrics_port = free_port()
        self.config = {
            "region": "local",
            "services": {
                name: {"grpc": f"127.0.0.1:{ports[name]}",
                       **({"metrics": f"127.0.0.1:{self.metrics_port}"} if name == "gateway" else {})}
                for name in MESH_SERVICES
            },
            "server": {"drain_grace_seconds": 5},
            "gateway": {"http_listen": f"127.0.0.1:{self.http_port}"},
            "auth": {"redis_url": self.redis_url, "tenants": {"acme": {"tier": "standard", "region": "local"}},
                     "seed_keys": [{"key": self.api_key, "tenant": "acme"}]},
            "inference": {"upstreams": {"anthropic": {
                "base_url": f"http://127.0.0.1:{self.simulator_port}", "api_key": "sk-sim"}},
                "retry_backoff_seconds": 0.01},
            "simulator": {"listen": f"127.0.0.1:{self.simulator_port}", "time_to_first_token_ms": 5,
                          "inter_token_ms": 1, "output_tokens": 24, **self.simulator_overrides},
        }
        self.config_path = self.workdir / f"sluice-{self.mode}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def simulator_base(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def grpc_address(self) -> str:
        return self.config["services"]["gateway"]["grpc"]

    def _spawn(self, name: str, targets: str) -> subprocess.Popen:
        log = open(self.workdir / f"{self.mode}-{name}.log", "wb")  # noqa: SIM115 - owned by the process
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.runtime.cli", "--config", str(self.config_path), "serve", targets],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        self.procs[name] = proc
        return proc

    def start(self) -> SluiceCluster:
        sim = self._spawn("simulator", "simulator")
        if self.mode == "all":
            main = self._spawn("all", "all")
            _wait_serving(self.grpc_address, 30, main)
        else:
            for name in MESH_SERVICES:
                self._spawn(name, name)
            for name in MESH_SERVICES:
                _wait_serving(self.config["services"][name]["grpc"], 30, self.procs[name])
        wait_for_port(self.simulator_port, 30, alive=lambda: sim.poll() is None)
        wait_for_port(self.http_port, 30)
        return self

    def log_text(self, name: str) -> str:
        return (self.workdir / f"{self.mode}-{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
