"""Scaling out: 1, 2 and 4 gateway processes in `all` mode on ONE real Redis.

`make bench` runs this as its "Scaling" section; alone:

    .venv/bin/python -m tests.bench.scaling [--counts 1,2,4] [--requests 1200]

Each gateway is its own `sluice serve all` process (its own port, spool and
event loop) with auth's keys and quota, the response cache, the prefix
ledger and the fleet store on one shared redis-server, and all of them in
front of one simulator on its fast profile. Every gateway seeds a key of the
same tenant, so all quota checks land on one tenant's keys: the hot-tenant
case, the one a Redis Cluster cannot spread (one hash tag, one slot).

The load is one `hey` per gateway, run at the same time, each with the same
number of clients (so the offered load grows with the processes). For each
count it reports requests/s in total and per process, Sluice's CPU per
request, the scaling efficiency (req/s at N over N times req/s at 1), and
where the machine's CPU went: Sluice, the simulator, Redis and hey, as cores
busy. On a machine with fewer cores than processes plus load generator, the
processes share cores and the curve bends there, not at Redis: the printed
explanation names the share each took.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.bench import __main__ as bench
from tests.infra.redis_server import redis_url
from tests.infra.sluice_cluster import SimulatorProcess, SluiceCluster

COUNTS = (1, 2, 4)
KINDS = ("JSON", "SSE")
ROUNDS = 2


@dataclass
class Point:
    """One (processes, kind) measurement, pooled over the rounds. Seconds are wall time of the
    parallel runs; CPU figures are seconds of CPU time."""

    processes: int
    kind: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    per_process_rps: list[float] = field(default_factory=list)
    sluice_cpu: float = 0.0
    simulator_cpu: float = 0.0
    redis_cpu: float = 0.0
    hey_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine (/proc/stat), ours and others'

    @property
    def rps(self) -> float:
        """Requests per second, all processes together."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Sluice's CPU (all gateway processes) per request, milliseconds."""
        return self.sluice_cpu / self.requests * 1000 if self.requests else 0.0

    def cores(self, cpu_seconds: float) -> float:
        """CPU seconds as cores busy over the run."""
        return cpu_seconds / self.seconds if self.seconds else 0.0


def redis_cpu(client: redis.Redis) -> float:
    """The redis-server's user + sys CPU seconds so far."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / bench.CLK_TCK


def children_cpu() -> float:
    """User + sys CPU seconds of this process's finished children (the hey runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(real_redis: str, workdir: Path, counts: tuple[int, ...], requests: int,
            concurrency: int, rounds: int = ROUNDS) -> list[Point]:
    """Starts max(counts) gateways, then runs each count on the first N of them, every count in
    turn, `rounds` times over (a neighbour's burst lands on all counts alike). `requests` and
    `concurrency` are per gateway."""
    files = bench.bodies(workdir)
    client = redis.Redis.from_url(real_redis)
    simulator = SimulatorProcess(workdir, {**bench.PROFILES["fast"][0],
                                           "allow_directives": False}).start()
    scope = f"scaling-{secrets.token_hex(4)}"  # the replicas of one deployment share fleet state
    gateways: list[SluiceCluster] = []
    points = {(n, kind): Point(n, kind) for n in counts for kind in KINDS}
    try:
        for i in range(max(counts)):
            own = workdir / f"gateway-{i}"
            own.mkdir()
            gateways.append(SluiceCluster(
                "all", real_redis, own, simulator=simulator, log_level="WARNING",
                name=f"gateway-{i}", overrides={"routing": {"fleet_scope": scope}}).start())
        for gateway in gateways:  # warm every process
            for kind in KINDS:
                bench.hey(f"{gateway.http_base}/v1/messages", files[kind], gateway.api_key,
                          100, concurrency)
        for _ in range(rounds):
            for n in counts:
                for kind in KINDS:
                    _run(points[(n, kind)], gateways[:n], simulator, client, files[kind],
                         max(requests // rounds, 50), concurrency)
    finally:
        for gateway in gateways:
            gateway.stop()
        simulator.stop()
        client.close()
    return [points[(n, kind)] for kind in KINDS for n in counts]


def _run(point: Point, gateways: list[SluiceCluster], simulator: SimulatorProcess,
         client: redis.Redis, body: Path, requests: int, concurrency: int) -> None:
    pids = [pid for gateway in gateways for pid in gateway.pids]
    assert simulator.proc is not None
    before = (bench.cpu_seconds(pids), bench.cpu_seconds([simulator.proc.pid]), redis_cpu(client),
              children_cpu(), machine_cpu())
    started = time.monotonic()
    with ThreadPoolExecutor(len(gateways)) as pool:
        results = list(pool.map(
            lambda g: bench.hey(f"{g.http_base}/v1/messages", body, g.api_key, requests,
                                concurrency), gateways))
    wall = time.monotonic() - started
    point.sluice_cpu += bench.cpu_seconds(pids) - before[0]
    point.simulator_cpu += bench.cpu_seconds([simulator.proc.pid]) - before[1]
    point.redis_cpu += redis_cpu(client) - before[2]
    point.hey_cpu += children_cpu() - before[3]
    point.machine_cpu += machine_cpu() - before[4]
    # The runs start together; the slowest one's span is the wall time of the step
    # (hey's own spans leave out its start-up; the step's wall clock includes it).
    span = max(s for _, _, s in results)
    point.seconds += min(span, wall)
    point.requests += sum(len(latencies) for latencies, _, _ in results)
    point.errors += sum(errors for _, errors, _ in results)
    rates = [len(latencies) / s for latencies, _, s in results]
    if point.per_process_rps:
        point.per_process_rps = [(a + b) / 2 for a, b in zip(point.per_process_rps, rates,
                                                             strict=True)]
    else:
        point.per_process_rps = rates


def table(points: list[Point]) -> str:
    """One line per (kind, processes): throughput, efficiency, CPU per request, cores busy."""
    base = {p.kind: p.rps for p in points if p.processes == 1}
    lines = [f"{'kind':<5} {'procs':>5} {'req':>6} {'req/s':>7} {'per proc':>9} {'efficiency':>10} "
             f"{'CPU ms/req':>10} {'cores: sluice':>13} {'sim':>5} {'redis':>5} {'hey':>5} "
             f"{'other':>5} {'total':>5} {'errors':>6}"]
    for p in points:
        each = sum(p.per_process_rps) / len(p.per_process_rps) if p.per_process_rps else 0.0
        one = base.get(p.kind)
        efficiency = f"{p.rps / (p.processes * one):>10.0%}" if one else f"{'':>10}"
        ours = p.sluice_cpu + p.simulator_cpu + p.redis_cpu + p.hey_cpu
        other = max(p.machine_cpu - ours, 0.0)
        lines.append(f"{p.kind:<5} {p.processes:>5} {p.requests:>6} {p.rps:>7.0f} {each:>9.0f} "
                     f"{efficiency} {p.cpu_ms_per_request:>10.2f} {p.cores(p.sluice_cpu):>13.2f} "
                     f"{p.cores(p.simulator_cpu):>5.2f} {p.cores(p.redis_cpu):>5.2f} "
                     f"{p.cores(p.hey_cpu):>5.2f} {p.cores(other):>5.2f} "
                     f"{p.cores(max(p.machine_cpu, ours)):>5.2f} {p.errors:>6}")
    return "\n".join(lines)


def explanation(points: list[Point], cores: int) -> str:
    """Where the curve stops being linear, from the measured shares of the machine's cores."""
    lines = []
    for kind in KINDS:
        rows = [p for p in points if p.kind == kind]
        one = next((p for p in rows if p.processes == 1), None)
        if not one or not one.rps:
            continue
        for p in rows:
            if p.processes == 1:
                lines.append(f"{kind} x1: {p.rps:.0f} req/s with Sluice's one process "
                             f"{p.cores(p.sluice_cpu):.2f} cores busy (one event loop: at most 1) "
                             f"and the machine {p.cores(max(p.machine_cpu, p.sluice_cpu)):.2f} of "
                             f"{cores}")
                continue
            ours = p.sluice_cpu + p.simulator_cpu + p.redis_cpu + p.hey_cpu
            busy = p.cores(max(p.machine_cpu, ours))
            others = p.cores(p.simulator_cpu + p.hey_cpu)
            verdict = (f"{kind} x{p.processes}: {p.rps / (p.processes * one.rps):.0%} of linear; "
                       f"{busy:.2f} of {cores} cores busy, of which {p.cores(p.sluice_cpu):.2f} "
                       f"Sluice, {others:.2f} the simulator and hey, {p.cores(p.redis_cpu):.2f} "
                       f"Redis, {p.cores(max(p.machine_cpu - ours, 0.0)):.2f} other work")
            if busy >= 0.85 * cores:
                verdict += (" -> bound by the machine's cores (Sluice shares them with the load "
                            "generator, the upstream and other work), not by Redis")
            elif p.cores(p.redis_cpu) >= 0.7:
                verdict += " -> Redis's one core is nearly busy: the shared Redis binds"
            else:
                verdict += " -> cores to spare: the offered load (clients per gateway) binds"
            cpu_change = p.cpu_ms_per_request / one.cpu_ms_per_request - 1
            verdict += f"; CPU per request {cpu_change:+.0%} against one process"
            lines.append(verdict)
    per_request_redis = [p.redis_cpu / p.requests * 1e6 for p in points if p.requests]
    if per_request_redis:
        lines.append(f"Redis CPU per request stays {min(per_request_redis):.0f}-"
                     f"{max(per_request_redis):.0f} us whatever the count: one shard would carry "
                     f"about {0.7e6 / max(per_request_redis):,.0f} req/s at 70% of its core "
                     "(this machine, this tenant)")
    if max(p.processes for p in points) > cores:
        lines.append(f"More processes than the {cores} cores: the extra processes only share the "
                     "same cores (shown for the shape of the curve, not as a gain).")
    return "\n".join(lines)


def run(real_redis: str, workdir: Path, requests: int = 1200, concurrency: int = 10,
        counts: tuple[int, ...] = COUNTS) -> list[Point]:
    """For `make bench`: the points, in a folder of their own under workdir."""
    own = workdir / "scaling"
    own.mkdir()
    return measure(real_redis, own, counts, requests, concurrency)


def header(requests: int, concurrency: int) -> str:
    return (f"Scaling (issue 20): N gateway processes in all mode, one real redis-server (quota of "
            f"one tenant), fast simulator upstream, one hey per gateway with {concurrency} "
            "clients, "
            f"{requests} requests per gateway per row; {os.cpu_count()} cores shared with the "
            "simulator, Redis and hey, and with other work on this machine: figures are noisy.")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scaling")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)),
                        help="gateway process counts (default 1,2,4)")
    parser.add_argument("--requests", type=int, default=1200, help="requests per gateway per row")
    parser.add_argument("--concurrency", type=int, default=10, help="hey clients per gateway")
    args = parser.parse_args()
    counts = tuple(sorted({int(c) for c in args.counts.split(",")}))
    if not counts or counts[0] < 1:
        parser.error("--counts: positive integers, e.g. 1,2,4")
    bench.ensure_hey()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-scaling-"))
    try:
        with redis_url() as real_redis:
            points = measure(real_redis, workdir, counts, args.requests, args.concurrency)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(header(args.requests, args.concurrency))
    print(table(points))
    print(explanation(points, os.cpu_count() or 1))


if __name__ == "__main__":
    main()
