"""`make bench-peers`: Sluice next to a widely used Python LLM proxy, LiteLLM.

One simulator (the bench's fast upstream) with Sluice in `all` mode and the LiteLLM proxy (one
worker, its Anthropic-style `/v1/messages` route) both in front of it; the same requests from
`hey` at the same concurrency, interleaved over rounds so that noise from a neighbour lands on
both alike. CPU per request covers every process of each proxy (LiteLLM's children, if any,
included), never the simulator's. LiteLLM is installed, pinned, into its own venv under
.cache/peers/ (git-ignored), once per checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.bench.__main__ import PROFILES, Result, Target, bodies, ensure_hey, run_profile
from tests.infra.build_once import built
from tests.infra.processes import free_port, stop_process
from tests.infra.sluice_cluster import SimulatorProcess, SluiceCluster

ROOT = Path(__file__).resolve().parents[2]
# The 1.106 line is the one issue 19's figures were measured on; 1.106.12 is its last release
# (1.110.2 was the newest 1.x when this was pinned).
LITELLM_VERSION = "1.106.12"
PEERS = ROOT / ".cache" / "peers"
MODEL = "claude-sonnet-4-6"
PEER_ROUNDS = 4
START_TIMEOUT = 180.0
# The simulator's message ids; both proxies pass them through, so an answer carrying one came from it.
SIMULATOR_ID = "msg_sim_"


# --- installing ---------------------------------------------------------------------------------

def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _litellm_installed(venv: Path) -> bool:
    return (venv / "INSTALLED").exists()


def ensure_litellm() -> Path:
    """The venv holding `litellm[proxy]==LITELLM_VERSION`, built once, at .cache/peers/litellm-<v>/.

    Built in a temporary sibling under an flock and renamed into place (tests/infra/build_once.py),
    so the console scripts' shebangs name the temporary path: LiteLLM is always started as
    `<venv>/bin/python -m litellm.proxy.proxy_cli`, never through bin/litellm. The proxy needs no
    database: without DATABASE_URL it keeps keys and spend in memory and never runs prisma.
    """
    final = PEERS / f"litellm-{LITELLM_VERSION}"

    def build(tmp: Path) -> None:
        # Run from the project's venv, `-m venv` makes the new venv from the same base python3.
        python = str(_venv_python(tmp))
        steps = [
            [sys.executable, "-m", "venv", str(tmp)],
            [python, "-m", "pip", "install", "-q", "--upgrade", "pip==25.3"],
            [python, "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=3600, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"installing LiteLLM {LITELLM_VERSION}: {' '.join(step)} exited "
                                   f"{done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        (tmp / "INSTALLED").write_text(LITELLM_VERSION + "\n")

    if _litellm_installed(final):
        print(f"LiteLLM {LITELLM_VERSION}: already installed in {final.relative_to(ROOT)}", flush=True)
    else:
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {final.relative_to(ROOT)} ...", flush=True)
        started = time.monotonic()
        built(final, _litellm_installed, build)
        print(f"LiteLLM {LITELLM_VERSION} installed in {time.monotonic() - started:.0f} s", flush=True)
    return final


# --- processes ----------------------------------------------------------------------------------

def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from a scan of /proc (ppid links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return sorted(tree)


class LiteLLMProcess:
    """The LiteLLM proxy (uvicorn, one worker) in front of `upstream`, clients on a master key."""

    def __init__(self, venv: Path, workdir: Path, upstream: str, upstream_key: str = "sk-sim") -> None:
        self.venv = venv
        self.workdir = workdir
        self.port = free_port()
        self.api_key = f"sk-bench-{secrets.token_hex(16)}"
        self.config = {
            "model_list": [{"model_name": MODEL,
                            "litellm_params": {"model": f"anthropic/{MODEL}", "api_base": upstream,
                                               "api_key": upstream_key}}],
            "general_settings": {"master_key": self.api_key},
            # No logging callbacks (no Langfuse, Prometheus, OTel...); nothing but the proxying.
            "litellm_settings": {"callbacks": [], "success_callback": [], "failure_callback": [],
                                 "set_verbose": False},
        }
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1/messages"

    @property
    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    @property
    def log_path(self) -> Path:
        return self.workdir / "litellm.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> LiteLLMProcess:
        config_path = self.workdir / "litellm.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               # Same verbosity as the Sluice processes (log_level WARNING): no access log per request.
               "LITELLM_LOG": "WARNING",
               # The bundled model price map, not a download from GitHub at start.
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        for name in ("DATABASE_URL", "DIRECT_URL", "REDIS_URL", "REDIS_HOST"):
            env.pop(name, None)
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [str(_venv_python(self.venv)), "-m", "litellm.proxy.proxy_cli", "--config", str(config_path),
             "--host", "127.0.0.1", "--port", str(self.port), "--num_workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"LiteLLM exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health/liveliness", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"LiteLLM not answering after {START_TIMEOUT:.0f}s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if not self.proc:
            return
        tree = self.pids
        stop_process(self.proc)
        for pid in tree:  # anything it started and left behind
            if pid != self.proc.pid and _ppid(pid) is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# --- checking that an answer is the simulator's message --------------------------------------------

def _post(url: str, api_key: str, body: Path) -> tuple[int, str, str]:
    request = urllib.request.Request(url, body.read_bytes(), {
        "x-api-key": api_key, "anthropic-version": "2023-06-01", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.headers.get("content-type", ""), answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode(errors="replace")


def check_answer(url: str, api_key: str, kind: str, body: Path) -> str:
    """'' when one request of `kind` answers a whole Anthropic message from the simulator (JSON: a
    `message` with text and usage; SSE: message_start ... content_block_delta ... message_stop,
    text and output tokens; the simulator's message id either way), else what was wrong."""
    status, content_type, text = _post(url, api_key, body)
    if status != 200:
        return f"HTTP {status}: {text[:400]}"
    if kind == "JSON":
        try:
            message = json.loads(text)
        except ValueError:
            return f"not JSON ({content_type}): {text[:400]}"
        words = "".join(block.get("text", "") for block in message.get("content", []) if isinstance(block, dict))
        if message.get("type") != "message" or message.get("role") != "assistant" or not words \
                or not message.get("usage", {}).get("output_tokens"):
            return f"not an Anthropic message: {text[:400]}"
        if not str(message.get("id", "")).startswith(SIMULATOR_ID):
            return f"a message, but not the simulator's (id {message.get('id')!r})"
        return ""
    if "text/event-stream" not in content_type:
        return f"not an event stream ({content_type}): {text[:400]}"
    events, words, output_tokens, message_id = [], "", 0, ""
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            data = json.loads(line[5:])
        except ValueError:
            return f"event data is not JSON: {line[:200]}"
        events.append(data.get("type"))
        if data.get("type") == "message_start":
            message_id = str(data.get("message", {}).get("id", ""))
        if data.get("type") == "content_block_delta":
            words += data.get("delta", {}).get("text", "")
        if data.get("type") == "message_delta":
            output_tokens = data.get("usage", {}).get("output_tokens", 0)
        if data.get("type") == "error":
            return f"error event: {line[:400]}"
    if not events or events[0] != "message_start" or events[-1] != "message_stop" or not words or not output_tokens:
        return f"incomplete stream (events {events[:4]}...{events[-2:]}, {len(words)} chars, " \
               f"{output_tokens} output tokens)"
    if not message_id.startswith(SIMULATOR_ID):
        return f"a stream, but not the simulator's (message id {message_id!r})"
    return ""


# --- the run ------------------------------------------------------------------------------------

def run(args: argparse.Namespace, files: dict[str, Path], workdir: Path, notes: list[str] | None = None
        ) -> list[Result]:
    """Sluice `all` and LiteLLM over one fast simulator, JSON and SSE, interleaved. What went wrong
    short of failing (an SSE check, error lines in LiteLLM's log) is appended to `notes`."""
    venv = ensure_litellm()
    overrides, scale = PROFILES["fast"]
    count = max(int(args.requests * scale), 100)
    simulator = SimulatorProcess(workdir, {**overrides, "allow_directives": False}).start()
    own = workdir / "sluice-all"
    own.mkdir()
    sluice = SluiceCluster("all", "memory://bench-peers-all", own, simulator=simulator, log_level="WARNING")
    litellm_dir = workdir / "litellm"
    litellm_dir.mkdir()
    litellm = LiteLLMProcess(venv, litellm_dir, simulator.base)
    notes = [] if notes is None else notes
    try:
        sluice.start()
        started = time.monotonic()
        litellm.start()
        print(f"LiteLLM {LITELLM_VERSION} up in {time.monotonic() - started:.1f} s on {litellm.base}", flush=True)
        targets = [Target("sluice", f"{sluice.http_base}/v1/messages", sluice.api_key, sluice.pids),
                   Target("litellm", litellm.url, litellm.api_key, litellm.pids)]
        for target in targets:
            for kind in ("JSON", "SSE"):
                problem = check_answer(target.url, target.api_key, kind, files[kind])
                print(f"check {target.name} {kind}: {problem or 'a whole Anthropic message from the simulator'}",
                      flush=True)
                if problem:
                    notes.append(f"{target.name} {kind} before the run: {problem}")
        if any(n.startswith(("sluice JSON", "litellm JSON")) for n in notes):
            raise RuntimeError("a JSON request did not come back as a message: " + "; ".join(notes)
                               + f"\nLiteLLM log:\n{litellm.log_tail()}")
        tree_before = litellm.pids
        results = run_profile("fast", targets, files, count, args.concurrency, rounds=args.rounds)
        if litellm.pids != tree_before:
            notes.append(f"LiteLLM's processes changed during the run ({tree_before} -> {litellm.pids}): "
                         "CPU of processes that came or went is not counted")
        for target in targets:  # still answering whole messages after the load?
            for kind in ("JSON", "SSE"):
                problem = check_answer(target.url, target.api_key, kind, files[kind])
                if problem:
                    notes.append(f"{target.name} {kind} after the run: {problem}")
        log = litellm.log_path.read_text(errors="replace").splitlines()
        error_lines = [line for line in log if "ERROR" in line or "Traceback" in line or "Exception" in line]
        if error_lines:
            notes.append(f"LiteLLM logged {len(error_lines)} error lines, first: {error_lines[0][:300]}")
        return results
    finally:
        litellm.stop()
        sluice.stop()
        simulator.stop()


def table(results: list[Result]) -> str:
    lines = [f"{'target':<8} {'kind':<5} {'req':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} "
             f"{'errors':>6}"]
    for r in results:
        cpu = "" if r.cpu_ms_per_request is None else f"{r.cpu_ms_per_request:11.2f}"
        lines.append(f"{r.target:<8} {r.kind:<5} {r.requests:>6} {r.rps:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
                     f"{cpu:>11} {r.errors:>6}")
    return "\n".join(lines)


def error_notes(results: list[Result]) -> list[str]:
    return [f"{r.target} answered {r.errors} of {r.requests} {r.kind} requests with a status other than 200"
            for r in results if r.errors]


def ratio_line(results: list[Result]) -> str:
    cpu = {(r.target, r.kind): r.cpu_ms_per_request or 0.0 for r in results}
    figures = []
    for kind in ("JSON", "SSE"):
        sluice = cpu.get(("sluice", kind), 0.0)
        figures.append(f"{kind} {cpu.get(('litellm', kind), 0.0) / sluice:.1f}" if sluice else f"{kind} n/a")
    return "peer ratio: CPU per request LiteLLM/Sluice " + ", ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench-peers")
    parser.add_argument("--requests", type=int, default=1000, help="requests per row, over all rounds")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=PEER_ROUNDS, help="interleaved rounds per row")
    parser.add_argument("--install-only", action="store_true", help="install LiteLLM and stop")
    args = parser.parse_args()
    if args.install_only:
        print(ensure_litellm())
        return
    ensure_hey()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-peers-"))
    try:
        files = {kind: path for kind, path in bodies(workdir).items() if kind in ("JSON", "SSE")}
        notes: list[str] = []
        results = run(args, files, workdir, notes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    overrides, _ = PROFILES["fast"]
    print()
    print(f"Sluice `all` (embedded store) and LiteLLM {LITELLM_VERSION} (proxy, one uvicorn worker, "
          f"/v1/messages, master key, no database, no callbacks) in front of one simulator (first token "
          f"{overrides['time_to_first_token_ms']} ms, {overrides['output_tokens']} tokens "
          f"{overrides['inter_token_ms']} ms apart), {args.concurrency} concurrent clients (hey), "
          f"{args.rounds} interleaved rounds, {os.cpu_count()} cores. CPU ms/req: all of each proxy's "
          "processes, simulator excluded.")
    print(table(results))
    for note in error_notes(results) + notes:
        print(f"note: {note}")
    print(ratio_line(results))


if __name__ == "__main__":
    main()
