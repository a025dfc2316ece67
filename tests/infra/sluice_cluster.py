"""Sluice as real processes: `all` (one process) or a mesh (one per service),
with the simulator as upstream, each on free loopback ports."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sluice.services import REQUEST_PATH
from tests.infra.processes import free_port, stop_process, wait_for_port

MESH_SERVICES = REQUEST_PATH  # a mesh: one process per request-path service
# Fast by default so tests spend little time waiting on the fake model.
TEST_SIMULATOR = {"time_to_first_token_ms": 5, "inter_token_ms": 1, "output_tokens": 24}


def wait_serving(address: str, timeout: float, proc: subprocess.Popen) -> None:
    """Polls grpc.health.v1 until the server at `address` says SERVING."""
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


def _spawn(workdir: Path, config: dict, name: str, targets: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen:
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.runtime.cli", "--config", str(config_path), "serve", targets],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    # Signal all first, so the processes drain in parallel.
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        stop_process(proc)


class SimulatorProcess:
    """`sluice serve simulator` in its own process."""

    def __init__(self, workdir: Path, overrides: dict | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config = {"simulator": {"listen": f"127.0.0.1:{self.port}", **TEST_SIMULATOR, **(overrides or {})},
                       "server": {"log_level": "WARNING"}}
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimulatorProcess:
        self.proc = _spawn(self.workdir, self.config, "simulator", "simulator")
        wait_for_port(self.port, 30, alive=lambda: self.proc.poll() is None)
        return self

    def stop(self) -> None:
        if self.proc:
            _stop([self.proc])


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


UNREACHABLE_LIMITS = {"requests_per_minute": 10**9, "tokens_per_minute": 10**12, "concurrent_streams": 10**6,
                      "daily_spend_usd": 10**9, "monthly_spend_usd": 10**10}


class SluiceCluster:
    """Sluice in `all` or `mesh` mode, in front of a simulator it owns or is given."""

    def __init__(self, mode: str, redis_url: str, workdir: Path, simulator: SimulatorProcess | None = None,
                 log_level: str = "INFO", region: str = "local", kafka_bootstrap: str = "",
                 tenants: dict[str, dict] | None = None, name: str = "", overrides: dict | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.mode = mode
        self.workdir = workdir
        self.env = env or {}
        self._owns_simulator = simulator is None
        self.simulator = simulator or SimulatorProcess(workdir)
        self.procs: dict[str, subprocess.Popen] = {}
        tenants = tenants or {"acme": {"tier": "standard", "region": region}}
        # One key per tenant; api_key is the first tenant's.
        self.keys = {t: f"sk-sluice-test{secrets.token_hex(4)}-{secrets.token_hex(24)}" for t in tenants}
        self.api_key = next(iter(self.keys.values()))
        self.name = name or mode
        self.spool_dir = workdir / f"spool-{self.name}"
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.config = {
            "region": region,
            "services": {
                name: {"grpc": f"127.0.0.1:{free_port()}",
                       **({"metrics": f"127.0.0.1:{self.metrics_port}"} if name == "gateway" else {})}
                for name in MESH_SERVICES
            },
            "server": {"drain_grace_seconds": 5, "log_level": log_level},
            "gateway": {"http_listen": f"127.0.0.1:{self.http_port}"},
            "auth": {"redis_url": redis_url, "tenants": tenants,
                     "seed_keys": [{"key": key, "tenant": t} for t, key in self.keys.items()],
                     # Every limit present, so each request runs the whole quota
                     # script, but too high for tests and the bench to reach.
                     "tiers": {"standard": {"tenant": UNREACHABLE_LIMITS, "key": UNREACHABLE_LIMITS}}},
            "inference": {"simulator_url": self.simulator.base,
                          "resilience": {"backoff_base_seconds": 0.01}},
            # Clusters of one test run share a Redis: each sees only its own
            # replicas' latency, breakers and cost shift.
            "routing": {"fleet_scope": f"test-{secrets.token_hex(6)}"},
            "events": {"spool_dir": str(self.spool_dir), "kafka_bootstrap": kafka_bootstrap,
                       "send_timeout_seconds": 3, "kafka_retry_seconds": 0.5},
        }
        if overrides:
            self.config = _merged(self.config, overrides)

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def simulator_base(self) -> str:
        return self.simulator.base

    @property
    def grpc_address(self) -> str:
        return self.config["services"]["gateway"]["grpc"]

    @property
    def pids(self) -> list[int]:
        """Sluice's own processes (not the simulator)."""
        return [p.pid for p in self.procs.values()]

    def start(self) -> SluiceCluster:
        if self._owns_simulator:
            self.simulator.start()
        names = ("all",) if self.mode == "all" else MESH_SERVICES
        for name in names:
            self.procs[name] = _spawn(self.workdir, self.config, f"{self.name}-{name}", name, self.env)
        for name in names:
            service = "gateway" if name == "all" else name
            wait_serving(self.config["services"][service]["grpc"], 30, self.procs[name])
        wait_for_port(self.http_port, 30)
        return self

    def log_text(self, name: str) -> str:
        return (self.workdir / f"{self.name}-{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        _stop(list(self.procs.values()))
        if self._owns_simulator:
            self.simulator.stop()


class SinkProcess:
    """`sluice serve sinks --region R` on that region's Kafka, storing under workdir."""

    def __init__(self, workdir: Path, region: str, kafka_bootstrap: str, batch_max_records: int = 200) -> None:
        self.workdir = workdir
        self.region = region
        self.data_dir = workdir / f"sinks-{region}"
        self.config = {"region": region, "server": {"log_level": "INFO", "drain_grace_seconds": 5},
                       "events": {"kafka_bootstrap": kafka_bootstrap},
                       "sinks": {"data_dir": str(self.data_dir), "batch_max_records": batch_max_records,
                                 "poll_timeout_ms": 200}}
        self.proc: subprocess.Popen | None = None
        self._starts = 0

    def start(self) -> SinkProcess:
        self._starts += 1
        self.proc = _spawn(self.workdir, self.config, f"sinks-{self.region}-{self._starts}", "sinks")
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no clean-up; whatever was mid-batch stays as it was."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc:
            _stop([self.proc])
