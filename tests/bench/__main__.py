"""`make bench`: the cost of Sluice over calling the upstream directly.

One run, one machine, one upstream (the simulator in its own process):
direct-to-simulator, then the same requests through Sluice in `all` mode and
as a mesh, as JSON and as SSE, at 10 concurrent clients. The load comes from
`hey` (a compiled client, so the client's own CPU stays small), and each
Sluice process's CPU time is read from /proc before and after, giving CPU
milliseconds per request alongside latency.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.infra.sluice_cluster import SimulatorProcess, SluiceCluster

ROOT = Path(__file__).resolve().parents[2]
HEY = ROOT / ".cache" / "bin" / "hey"
HEY_VERSION = "v0.1.4"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Two upstreams. "fast" answers in ~20 ms so 10 clients saturate this 2-core
# machine: it measures Sluice's cost (CPU per request, throughput). "model"
# answers like a small model (first token 200 ms, 40 tokens 5 ms apart): it
# measures the latency Sluice adds when it is not the bottleneck.
PROFILES = {
    "fast": ({"time_to_first_token_ms": 10, "inter_token_ms": 0.5, "output_tokens": 20}, 1.0),
    "model": ({"time_to_first_token_ms": 200, "inter_token_ms": 5, "output_tokens": 40}, 0.15),
}


@dataclass
class Result:
    profile: str
    target: str
    kind: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float | None
    errors: int


def ensure_hey() -> Path:
    if HEY.exists():
        return HEY
    if shutil.which("go") is None:
        sys.exit("make bench needs Go to install the load generator `hey` (go install github.com/rakyll/hey)")
    HEY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "install", f"github.com/rakyll/hey@{HEY_VERSION}"], check=True,
                   env={**os.environ, "GOBIN": str(HEY.parent)})
    return HEY


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / CLK_TCK


def hey(url: str, body: Path, api_key: str, requests: int, concurrency: int) -> tuple[list[float], int, float]:
    out = subprocess.run(
        [str(HEY), "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
         "-H", f"x-api-key: {api_key}", "-H", "anthropic-version: 2023-06-01", "-D", str(body), "-o", "csv", url],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    latencies = [float(r["response-time"]) for r in rows]
    errors = sum(1 for r in rows if r["status-code"] != "200")
    span = max(float(r["offset"]) + float(r["response-time"]) for r in rows) - min(float(r["offset"]) for r in rows)
    return latencies, errors, span


def measure(profile: str, target: str, kind: str, url: str, body: Path, api_key: str, pids: list[int],
            requests: int, concurrency: int) -> Result:
    hey(url, body, api_key, max(requests // 10, 50), concurrency)  # warm connections and caches
    before = cpu_seconds(pids) if pids else 0.0
    latencies, errors, span = hey(url, body, api_key, requests, concurrency)
    cpu = (cpu_seconds(pids) - before) / len(latencies) * 1000 if pids else None
    q = statistics.quantiles(latencies, n=100)
    return Result(profile, target, kind, len(latencies), len(latencies) / span, q[49] * 1000, q[98] * 1000, cpu, errors)


def bodies(workdir: Path) -> dict[str, Path]:
    out = {}
    for kind, stream in (("JSON", False), ("SSE", True)):
        path = workdir / f"{kind}.json"
        path.write_text(json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": stream,
                                    "messages": [{"role": "user", "content": "Benchmark me, please."}]}))
        out[kind] = path
    return out


def table(results: list[Result]) -> str:
    direct = {(r.profile, r.kind): r for r in results if r.target == "direct"}
    lines = [
        f"{'upstream':<8} {'target':<8} {'kind':<5} {'req':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'+p50 ms':>8} {'+p99 ms':>8} {'CPU ms/req':>11} {'errors':>6}",
    ]
    for r in results:
        d = direct[(r.profile, r.kind)]
        extra50 = "" if r.target == "direct" else f"{r.p50_ms - d.p50_ms:+8.2f}"
        extra99 = "" if r.target == "direct" else f"{r.p99_ms - d.p99_ms:+8.2f}"
        cpu = "" if r.cpu_ms_per_request is None else f"{r.cpu_ms_per_request:11.2f}"
        lines.append(f"{r.profile:<8} {r.target:<8} {r.kind:<5} {r.requests:>6} {r.rps:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
                     f"{extra50:>8} {extra99:>8} {cpu:>11} {r.errors:>6}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--requests", type=int, default=2000, help="requests per row (scaled per profile)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    args = parser.parse_args()
    ensure_hey()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    files = bodies(workdir)
    results: list[Result] = []
    try:
        for profile in args.profiles.split(","):
            overrides, scale = PROFILES[profile]
            count = max(int(args.requests * scale), 100)
            simulator = SimulatorProcess(workdir, {**overrides, "allow_directives": False}).start()
            try:
                for kind, body in files.items():
                    results.append(measure(profile, "direct", kind, f"{simulator.base}/v1/messages", body, "sk-sim",
                                           [], count, args.concurrency))
                for mode in ("all", "mesh"):
                    # memory:// works for the mesh too: only the auth process holds keys.
                    cluster = SluiceCluster(mode, "memory://bench", workdir, simulator=simulator,
                                            log_level="WARNING").start()
                    try:
                        for kind, body in files.items():
                            results.append(measure(profile, mode, kind, f"{cluster.http_base}/v1/messages", body,
                                                   cluster.api_key, cluster.pids, count, args.concurrency))
                    finally:
                        cluster.stop()
            finally:
                simulator.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"Sluice bench: {args.concurrency} concurrent clients (hey), simulator upstream in its own process, "
          f"{os.cpu_count()} cores. Upstreams: " + "; ".join(
              f"{name} = first token {o['time_to_first_token_ms']} ms, {o['output_tokens']} tokens "
              f"{o['inter_token_ms']} ms apart" for name, (o, _) in PROFILES.items()) + ".")
    print("+p50/+p99: added over the direct call to the same upstream in the same run. "
          "CPU ms/req: all Sluice processes, simulator excluded.")
    print(table(results))


if __name__ == "__main__":
    main()
