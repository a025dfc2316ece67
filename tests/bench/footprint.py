"""What one request costs the shared infrastructure: Redis operations and event bytes.

`make bench` runs this as "Per-request footprint"; alone:

    .venv/bin/python -m tests.bench.footprint [--requests 1500]

Sluice in `all` and mesh mode, each with auth (keys, quota), the response
cache, the prefix ledger and the fleet store on ONE real redis-server, in
front of the simulator's fast profile, loaded by `hey` (10 clients). Per
request kind (JSON, SSE, and JSON asking for the response cache with
`x-sluice-cache: read-write`, which is all hits after the first) it reports:

- CPU milliseconds per request over Sluice's processes (from /proc);
- Redis commands per request from `INFO commandstats` before and after,
  less the background rate (the fleet store's exchange, measured idle first);
  commandstats also counts the commands a Lua script runs, so a second,
  short sample under MONITOR splits them into what clients send (round
  trips: EVALSHA counts once) and what runs inside scripts;
- event bytes per request: the billing, audit (and review) records the
  gateway spooled for Kafka, key + value + headers, read back from its spool
  (no Kafka in this run, so every event stays there).

These are the per-request inputs of `sluice capacity`
(libs/sluice/capacity/measured.yaml). The machine is shared and small, so
CPU figures are noisy; Redis commands and event bytes are counts, not timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from sluice.events import records
from sluice.events.spool import pending_records
from tests.bench import __main__ as bench
from tests.infra.redis_server import redis_url
from tests.infra.sluice_cluster import SimulatorProcess, SluiceCluster

KINDS = ("JSON", "SSE", "cached")
CACHE_HEADER = ("x-sluice-cache: read-write",)
MODES = ("all", "mesh")
IDLE_SECONDS = 4.0
MONITOR_SAMPLE = 100  # requests per kind under MONITOR (it slows Redis: counts only, no timing)


@dataclass
class Footprint:
    """One (mode, kind) row. Per-request figures are means over `requests`."""

    mode: str
    kind: str
    requests: int
    rps: float
    cpu_ms_per_request: float
    errors: int
    # commandstats calls per request by command (lower case), script-run commands included.
    redis_calls: dict[str, float] = field(default_factory=dict)
    # From the MONITOR sample: commands clients sent, and commands run inside Lua scripts.
    client_commands: float = 0.0
    script_commands: float = 0.0
    # Spooled bytes per request by event kind (key + value + Kafka headers), and records.
    event_bytes: dict[str, float] = field(default_factory=dict)
    events_per_request: float = 0.0
    # Redis's own CPU per request (INFO cpu, user + sys, background subtracted), microseconds,
    # and the scripts' share of it (EVALSHA's usec in commandstats, inner commands included).
    redis_cpu_us: float = 0.0
    script_us: float = 0.0

    @property
    def redis_total(self) -> float:
        return sum(self.redis_calls.values())


def command_calls(client: redis.Redis) -> Counter[str]:
    """INFO commandstats as {command: calls} (subcommands as "config|get"), plus the
    pseudo-entries "~cpu_us" (the server's user + sys CPU, microseconds) and "~evalsha_us"."""
    stats = client.info("commandstats")
    calls = Counter({name.removeprefix("cmdstat_").lower(): int(value["calls"])
                     for name, value in stats.items()})
    cpu = client.info("cpu")
    calls["~cpu_us"] = int((float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6)
    calls["~evalsha_us"] = int(stats.get("cmdstat_evalsha", {}).get("usec", 0))
    return calls


class Monitor:
    """MONITOR on its own connection, in a thread: counts commands by source
    ("client" or "lua") and name until stop()."""

    def __init__(self, url: str) -> None:
        parsed = redis.connection.parse_url(url)
        self._sock = socket.create_connection((parsed["host"], parsed.get("port", 6379)))
        self._sock.sendall(b"MONITOR\r\n")
        self._sock.settimeout(0.2)
        self.counts: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                # +1700000000.123456 [0 127.0.0.1:5555] "GET" "k"   or   [0 lua] "hget" ...
                if not line.startswith(b"+") or b"] \"" not in line:
                    continue
                source, command = line.split(b"] \"", 1)
                who = "lua" if source.endswith(b"lua") else "client"
                self.counts[(who, command.split(b"\"", 1)[0].decode().lower())] += 1

    def stop(self) -> Counter[tuple[str, str]]:
        time.sleep(0.3)  # let the last lines arrive
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.counts


def spooled(cluster: SluiceCluster) -> tuple[Counter[str], int]:
    """(bytes by event kind, records) in the cluster's spool: key + value + Kafka headers."""
    folder = cluster.spool_dir / cluster.config["region"]
    sizes: Counter[str] = Counter()
    count = 0
    if not folder.exists():
        return sizes, 0
    for record in pending_records(folder):
        headers = sum(len(k) + len(v) for k, v in records.kafka_headers(record.kind))
        sizes[record.kind] += len(record.key) + len(record.value) + headers
        count += 1
    return sizes, count


def measure(real_redis: str, workdir: Path, requests: int, concurrency: int) -> list[Footprint]:
    """Every (mode, kind) row; see the module docstring."""
    files = bench.bodies(workdir)
    files["cached"] = files["JSON"]
    client = redis.Redis.from_url(real_redis)
    fast = {**bench.PROFILES["fast"][0], "allow_directives": False}
    simulator = SimulatorProcess(workdir, fast).start()
    rows: list[Footprint] = []
    try:
        for mode in MODES:
            own = workdir / f"footprint-{mode}"
            own.mkdir()
            cluster = SluiceCluster(mode, real_redis, own, simulator=simulator, log_level="WARNING",
                                    name=f"footprint-{mode}").start()
            try:
                rows += _measure_cluster(cluster, client, real_redis, files, requests, concurrency)
            finally:
                cluster.stop()
    finally:
        simulator.stop()
        client.close()
    return rows


def _measure_cluster(cluster: SluiceCluster, client: redis.Redis, url: str, files: dict[str, Path],
                     requests: int, concurrency: int) -> list[Footprint]:
    target = f"{cluster.http_base}/v1/messages"
    for kind in KINDS:  # warm up: connections, code paths, the cached answer
        bench.hey(target, files[kind], cluster.api_key, 100, concurrency, _headers(kind))
    before = command_calls(client)
    time.sleep(IDLE_SECONDS)
    idle = command_calls(client) - before
    background = {name: calls / IDLE_SECONDS for name, calls in idle.items() if name != "info"}
    rows = []
    for kind in KINDS:
        calls_before = command_calls(client)
        cpu_before = bench.cpu_seconds(cluster.pids)
        events_before, records_before = spooled(cluster)
        started = time.monotonic()
        latencies, errors, span = bench.hey(target, files[kind], cluster.api_key, requests,
                                            concurrency, _headers(kind))
        elapsed = time.monotonic() - started
        cpu = bench.cpu_seconds(cluster.pids) - cpu_before
        events_after, records_after = spooled(cluster)
        calls = command_calls(client) - calls_before
        n = len(latencies)
        per_request = {}
        cpu_us = (calls["~cpu_us"] - background.get("~cpu_us", 0.0) * elapsed) / n
        script_us = calls["~evalsha_us"] / n
        for name, count in calls.items():
            if name == "info" or name.startswith("~"):
                continue
            value = (count - background.get(name, 0.0) * elapsed) / n
            if value > 0.005:
                per_request[name] = round(value, 3)
        rows.append(Footprint(
            mode=cluster.mode, kind=kind, requests=n, rps=n / span,
            cpu_ms_per_request=cpu / n * 1000,
            errors=errors, redis_calls=per_request,
            event_bytes={k: round(v / n, 1) for k, v in (events_after - events_before).items()},
            events_per_request=(records_after - records_before) / n,
            redis_cpu_us=round(cpu_us, 1), script_us=round(script_us, 1)))
    for row in rows:  # the split, under MONITOR, on a short sample
        monitor = Monitor(url)
        time.sleep(0.2)
        sample, _, _ = bench.hey(target, files[row.kind], cluster.api_key, MONITOR_SAMPLE,
                                 concurrency, _headers(row.kind))
        counts = monitor.stop()
        row.client_commands = round(sum(c for (who, _), c in counts.items() if who == "client")
                                    / len(sample), 2)
        row.script_commands = round(sum(c for (who, _), c in counts.items() if who == "lua")
                                    / len(sample), 2)
    return rows


def _headers(kind: str) -> tuple[str, ...]:
    return CACHE_HEADER if kind == "cached" else ()


def table(rows: list[Footprint]) -> str:
    """The rows as text: one line per (mode, kind), then each row's commands."""
    lines = [f"{'mode':<5} {'kind':<7} {'req':>5} {'req/s':>6} {'CPU ms/req':>10} "
             f"{'Redis ops/req':>13} {'client':>7} {'in Lua':>7} {'Redis us/req':>12} "
             f"{'Lua us/req':>10} {'events/req':>10} {'event B/req':>11} {'errors':>6}"]
    for r in rows:
        lines.append(f"{r.mode:<5} {r.kind:<7} {r.requests:>5} {r.rps:>6.0f} "
                     f"{r.cpu_ms_per_request:>10.2f} {r.redis_total:>13.2f} "
                     f"{r.client_commands:>7.2f} {r.script_commands:>7.2f} "
                     f"{r.redis_cpu_us:>12.1f} {r.script_us:>10.1f} "
                     f"{r.events_per_request:>10.2f} {sum(r.event_bytes.values()):>11.0f} "
                     f"{r.errors:>6}")
    lines.append("Redis commands per request (INFO commandstats, background subtracted):")
    for r in rows:
        calls = ", ".join(f"{name} {count:g}" for name, count in sorted(r.redis_calls.items()))
        events = ", ".join(f"{kind} {size:.0f} B" for kind, size in sorted(r.event_bytes.items()))
        lines.append(f"  {r.mode:<5} {r.kind:<7} {calls}; events: {events}")
    return "\n".join(lines)


def summary(rows: list[Footprint]) -> str:
    """The line `make bench` ends the section with: Redis operations per request."""
    figures = ", ".join(f"{r.mode} {r.kind} {r.redis_total:.1f} ({r.client_commands:.1f} sent)"
                        for r in rows)
    return f"Redis operations per request (commandstats; sent = round trips by clients): {figures}"


def run(real_redis: str, workdir: Path, requests: int = 1500, concurrency: int = 10
        ) -> list[Footprint]:
    """For `make bench`: the rows, in a folder of their own under workdir."""
    own = workdir / "footprint"
    own.mkdir()
    return measure(real_redis, own, requests, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.footprint")
    parser.add_argument("--requests", type=int, default=1500, help="requests per row")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="the rows as JSON too")
    args = parser.parse_args()
    bench.ensure_hey()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-footprint-"))
    try:
        with redis_url() as real_redis:
            rows = measure(real_redis, workdir, args.requests, args.concurrency)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"Per-request footprint: {args.concurrency} clients (hey), fast simulator upstream, "
          f"one real redis-server, {os.cpu_count()} cores (shared machine: CPU figures are noisy).")
    print(table(rows))
    print(summary(rows))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
