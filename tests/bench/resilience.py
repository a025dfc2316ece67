"""`make bench` rows for the inference proxy's resilience (issue 14).

Two experiments, each side by side in one run against one simulator:

1. A deployment that fails 30% of requests with 529 (the local region's
   first deployment for the model): the direct call to it, Sluice with its
   resilience off (one candidate, one attempt), and Sluice as shipped
   (retries within the budget, fallback to the next deployments, breakers).
   Success rate, and p50/p99 of the time to the whole answer.
2. A heavy-tailed deployment (first token in ~100 ms, but 5% of requests
   wait 1.5 s): Sluice without hedging, and with hedging after the
   deployment's observed 90th percentile. p50/p99 time to first token.

Load: `concurrency` streaming clients (httpx, asyncio), the same prompts for
every row. Latencies are client-side wall time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.infra.sluice_cluster import SimulatorProcess, SluiceCluster

MODEL = "claude-sonnet-4-6"
FAILING = "anthropic-global"  # the first candidate of MODEL in the local region
UPSTREAM = {"time_to_first_token_ms": 100, "inter_token_ms": 2, "output_tokens": 20}
ERRORS = {"failure_rate": 0.3, "failure_status": 529, "seed": 14}
HEAVY_TAIL = {"slow_probability": 0.05, "slow_ttft_ms": 1500, "seed": 15}


@dataclass
class Row:
    experiment: str
    target: str
    requests: int
    ok: int
    p50_ms: float
    p99_ms: float

    @property
    def success(self) -> float:
        return self.ok / self.requests * 100


async def _load(url: str, api_key: str, requests: int, concurrency: int, first_token: bool
                ) -> tuple[int, list[float]]:
    """(answers whole, latencies in seconds: to the first text delta when
    `first_token`, else to the end, of the whole answers)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    ok, latencies = 0, []

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal ok
        while not queue.empty():
            i = queue.get_nowait()
            started = time.perf_counter()
            first = None
            body = {"model": MODEL, "max_tokens": 64, "stream": True,
                    "messages": [{"role": "user", "content": f"Bench request {i}."}]}
            async with http.stream("POST", url, json=body, headers={
                    "x-api-key": api_key, "anthropic-version": "2023-06-01"}) as response:
                whole = False
                async for line in response.aiter_lines():
                    if first is None and line.startswith("event: content_block_delta"):
                        first = time.perf_counter()
                    if line == "event: message_stop":
                        whole = True
            if response.status_code == 200 and whole:
                ok += 1
                latencies.append((first if first_token and first else time.perf_counter()) - started)

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return ok, latencies


def _row(experiment: str, target: str, requests: int, measured: tuple[int, list[float]]) -> Row:
    ok, latencies = measured
    if len(latencies) >= 2:
        q = statistics.quantiles(latencies, n=100)
        p50, p99 = q[49] * 1000, q[98] * 1000
    else:
        p50 = p99 = float("nan")
    return Row(experiment, target, requests, ok, p50, p99)


def _put(simulator: SimulatorProcess, deployment: str, profile: dict) -> None:
    httpx.put(f"{simulator.base}/_sim/deployments/{deployment}", json=profile, timeout=5).raise_for_status()


def run(workdir: Path, redis_url: str, requests: int = 400, concurrency: int = 10) -> list[Row]:
    simulator = SimulatorProcess(workdir, {**UPSTREAM, "allow_directives": False}).start()
    plain = {"resilience": {"attempts_per_candidate": 1, "hedging": False, "circuit_breakers": False,
                            "adaptive_concurrency": False}}
    clusters = {
        "no resilience": SluiceCluster("all", "memory://bench-r0", _dir(workdir, "r0"), simulator=simulator,
                                       log_level="WARNING", overrides={"inference": plain,
                                                                       "routing": {"max_candidates": 1}}),
        "sluice": SluiceCluster("all", "memory://bench-r1", _dir(workdir, "r1"), simulator=simulator,
                                log_level="WARNING"),
        "sluice, 1 dep.": SluiceCluster("all", "memory://bench-r4", _dir(workdir, "r4"), simulator=simulator,
                                        log_level="WARNING", overrides={"routing": {"max_candidates": 1}}),
        "no hedging": SluiceCluster("all", "memory://bench-r2", _dir(workdir, "r2"), simulator=simulator,
                                    log_level="WARNING", overrides={"inference": {"resilience": {"hedging": False}}}),
        "hedging": SluiceCluster("all", "memory://bench-r3", _dir(workdir, "r3"), simulator=simulator,
                                 log_level="WARNING", overrides={"inference": {"resilience": {
                                     "hedge_percentile": 0.9}}}),
    }
    rows: list[Row] = []
    try:
        for cluster in clusters.values():
            cluster.start()

        def through(name: str, first_token: bool, n: int = requests) -> tuple[int, list[float]]:
            c = clusters[name]
            return asyncio.run(_load(f"{c.http_base}/v1/messages", c.api_key, n, concurrency, first_token))

        _put(simulator, FAILING, ERRORS)
        direct = f"{simulator.base}/d/{FAILING}/v1/messages"
        rows.append(_row("30% 529s", "direct", requests,
                         asyncio.run(_load(direct, "sk-sim", requests, concurrency, False))))
        for name in ("no resilience", "sluice, 1 dep.", "sluice"):
            rows.append(_row("30% 529s", f"{name}", requests, through(name, False)))
        _put(simulator, FAILING, HEAVY_TAIL)
        for name in ("no hedging", "hedging"):
            through(name, True, 60)  # warm up: the hedge delay needs observed first-token times
            rows.append(_row("heavy tail TTFT", name, requests, through(name, True)))
    finally:
        for cluster in clusters.values():
            cluster.stop()
        simulator.stop()
    return rows


def _dir(workdir: Path, name: str) -> Path:
    path = workdir / f"resilience-{name}"
    path.mkdir()
    return path


def table(rows: list[Row]) -> str:
    lines = [f"{'experiment':<16} {'target':<14} {'req':>5} {'success %':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    for r in rows:
        lines.append(f"{r.experiment:<16} {r.target:<14} {r.requests:>5} {r.success:>9.1f} {r.p50_ms:>8.1f} "
                     f"{r.p99_ms:>8.1f}")
    return "\n".join(lines)
