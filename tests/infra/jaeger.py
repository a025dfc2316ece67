"""A real Jaeger v2 (the OpenTelemetry-Collector-based `jaeger` binary, built by go_tools) for
tests that export traces over OTLP and read them back through Jaeger's query API.

    with JaegerProcess(tmp_path) as jaeger:
        ...export spans to jaeger.otlp_grpc_endpoint or jaeger.otlp_http_endpoint...
        trace = jaeger.wait_for_trace(trace_id_hex, lambda t: len(services_of(t)) >= 2, timeout=30)
        for span in spans_of(trace): ...

Every port the binary listens on is a free loopback port chosen here, and nothing else is
configured to listen (no healthcheck, pprof, zpages, expvar, remote sampling, jaeger/zipkin
receivers; the collector's own metrics are off), so any number of Jaegers can run at once.

The config follows cmd/jaeger/config.yaml and internal/all-in-one.yaml of jaeger v1.76.0:
receivers.otlp -> processors.batch -> exporters.jaeger_storage_exporter, a memory backend in the
jaeger_storage extension, and jaeger_query serving the JSON API (/api/services, /api/traces,
/api/traces/{id}) and the v3 API (/api/v3/...) on its HTTP port, api_v2/api_v3 gRPC on its gRPC
port.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.infra.processes import free_port, stop_process, wait_for_port

START_TIMEOUT = 60.0  # a cold start (first exec of a ~150 MB binary) takes a few seconds


class JaegerError(RuntimeError):
    """Jaeger would not start, or its query API answered with an error."""


@dataclass(frozen=True)
class Span:
    """One span of a trace, flattened from the JSON API's span + processes map."""

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str | None  # the CHILD_OF reference's span id, None for a root span
    service: str  # the process's serviceName (the OTel resource's service.name)
    operation: str
    attributes: dict[str, Any] = field(default_factory=dict)  # the span's tags
    process_tags: dict[str, Any] = field(default_factory=dict)  # the resource's other attributes
    start_us: int = 0
    duration_us: int = 0


def normalize_trace_id(trace_id_hex: str) -> str:
    """Jaeger prints a trace id whose high 64 bits are zero as 16 hex digits; OTel prints 32."""
    return trace_id_hex.lower().zfill(32)


def _tags(tags: list[dict] | None) -> dict[str, Any]:
    return {tag["key"]: tag.get("value") for tag in tags or ()}


def spans_of(trace: dict) -> list[Span]:
    """The spans of one trace as the JSON API returns it (an element of `data`): the parent is
    the CHILD_OF reference (or the legacy parentSpanID field), the service is looked up in the
    trace's `processes` map by the span's processID."""
    processes = trace.get("processes") or {}
    spans = []
    for raw in trace.get("spans") or ():
        parent = None
        for ref in raw.get("references") or ():
            if ref.get("refType") == "CHILD_OF":
                parent = ref["spanID"]
                break
        if parent is None and raw.get("parentSpanID") not in (None, "", "0", "0" * 16):
            parent = raw["parentSpanID"]
        process = raw.get("process") or processes.get(raw.get("processID"), {})
        spans.append(Span(
            trace_id=normalize_trace_id(raw["traceID"]),
            span_id=raw["spanID"].lower().zfill(16),
            parent_span_id=parent.lower().zfill(16) if parent else None,
            service=process.get("serviceName", ""),
            operation=raw.get("operationName", ""),
            attributes=_tags(raw.get("tags")),
            process_tags=_tags(process.get("tags")),
            start_us=int(raw.get("startTime", 0)),
            duration_us=int(raw.get("duration", 0)),
        ))
    return spans


def services_of(trace: dict) -> set[str]:
    """The service names that have spans in `trace`."""
    return {span.service for span in spans_of(trace)}


class JaegerProcess:
    """A `jaeger --config <workdir>/jaeger.yaml` process with OTLP receivers, in-memory storage
    and the query service, each on its own free loopback port."""

    def __init__(self, workdir: Path, *, max_traces: int = 100_000,
                 binary: Path | str | None = None, log_level: str = "info") -> None:
        self._workdir = Path(workdir)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._binary = binary
        self.otlp_grpc_port = free_port()
        self.otlp_http_port = free_port()
        self.query_http_port = free_port()
        self.query_grpc_port = free_port()
        self.config = self._config(max_traces, log_level)
        self.config_path = self._workdir / "jaeger.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log_path = self._workdir / "jaeger.log"
        self._proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    def _config(self, max_traces: int, log_level: str) -> dict:
        def loopback(port: int) -> str:
            return f"127.0.0.1:{port}"

        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {"traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }},
                "telemetry": {
                    "resource": {"service.name": "jaeger"},
                    # The collector's own metrics default to a Prometheus reader on :8888; none.
                    "metrics": {"level": "none"},
                    "logs": {"level": log_level},
                },
            },
            "extensions": {
                "jaeger_storage": {
                    "backends": {"memstore": {"memory": {"max_traces": max_traces}}},
                },
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    # On by default in v2: it would export Jaeger's own spans over OTLP to
                    # localhost:4317 (or OTEL_EXPORTER_OTLP_ENDPOINT): maybe into a test's trace.
                    "enable_tracing": False,
                    "http": {"endpoint": loopback(self.query_http_port)},  # default :16686
                    "grpc": {"endpoint": loopback(self.query_grpc_port)},  # default :16685
                },
            },
            "receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": loopback(self.otlp_grpc_port)},  # default :4317
                "http": {"endpoint": loopback(self.otlp_http_port)},  # default :4318
            }}},
            "processors": {"batch": {"timeout": "200ms"}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }

    # -- addresses -------------------------------------------------------------------------------

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def otlp_http_traces_url(self) -> str:
        return f"{self.otlp_http_endpoint}/v1/traces"

    @property
    def query_base(self) -> str:
        return f"http://127.0.0.1:{self.query_http_port}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> JaegerProcess:
        if self._binary is None:
            from tests.infra.go_tools import ensure

            self._binary = ensure("jaeger")  # may build it (minutes) on a fresh machine
        # Jaeger's own SDK-style settings must not come from the test process's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        started = time.monotonic()
        with open(self.log_path, "ab") as log:  # a file: a pipe nobody reads would stall it
            self._proc = subprocess.Popen(
                [str(self._binary), "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self._workdir,
            )
        proc = self._proc
        try:
            # The collector starts extensions (query) first and receivers last.
            for port in (self.query_http_port, self.otlp_grpc_port, self.otlp_http_port):
                remaining = max(START_TIMEOUT - (time.monotonic() - started), 0.1)
                wait_for_port(port, remaining, alive=lambda: proc.poll() is None)
            self._wait_query_ready(max(START_TIMEOUT - (time.monotonic() - started), 1.0))
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise JaegerError(f"Jaeger did not start ({exc}); its log:\n"
                              f"{self.log_text()[-4000:]}") from exc
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_query_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.services()
                return
            except (JaegerError, OSError) as exc:
                if time.monotonic() >= deadline or (self._proc and self._proc.poll() is not None):
                    raise TimeoutError(f"query API not answering: {exc}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, 10)

    def __enter__(self) -> JaegerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def configured_ports(self) -> set[int]:
        return {self.otlp_grpc_port, self.otlp_http_port,
                self.query_http_port, self.query_grpc_port}

    def listening_ports(self) -> set[int]:
        """Every TCP port the process listens on and every UDP port it has bound (Linux /proc),
        to check that it binds nothing but the configured ports."""
        if self._proc is None or self._proc.poll() is not None:
            return set()
        inodes = set()
        fd_dir = Path(f"/proc/{self._proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table, listening in (("tcp", "0A"), ("tcp6", "0A"), ("udp", None), ("udp6", None)):
            path = Path(f"/proc/{self._proc.pid}/net/{table}")
            if not path.exists():
                continue
            for line in path.read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] in inodes and (listening is None or cols[3] == listening):
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        return ports

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- query API (jaeger-query's JSON API) -----------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
        url = self.query_base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            if exc.code == 404 and not path.endswith("/services"):
                return 404, None
            raise JaegerError(f"GET {url}: HTTP {exc.code}: {body[:1000]}") from exc

    def services(self) -> list[str]:
        """GET /api/services: the service names that have stored spans."""
        _, body = self._get("/api/services")
        return sorted(body.get("data") or [])

    def traces(self, service: str, limit: int = 20, lookback_s: float = 3600,
               operation: str | None = None, tags: dict[str, str] | None = None) -> list[dict]:
        """GET /api/traces?service=...: the recent traces that have a span of `service`, each
        with `traceID`, `spans` and `processes`."""
        now_us = int(time.time() * 1_000_000)
        params: dict[str, Any] = {"service": service, "limit": limit,
                                  "start": now_us - int(lookback_s * 1_000_000),
                                  "end": now_us + 60_000_000}
        if operation:
            params["operation"] = operation
        if tags:
            params["tags"] = json.dumps(tags)
        status, body = self._get("/api/traces", params)
        if status == 404:
            return []
        return body.get("data") or []

    def trace(self, trace_id_hex: str) -> dict | None:
        """GET /api/traces/{id}: the trace, or None while Jaeger has none of its spans."""
        status, body = self._get(f"/api/traces/{normalize_trace_id(trace_id_hex)}")
        if status == 404:
            return None
        data = body.get("data") or []
        return data[0] if data else None

    def trace_v3(self, trace_id_hex: str) -> dict | None:
        """GET /api/v3/traces/{id}: the trace as OTLP JSON ({"result": {"resourceSpans": ...}})."""
        status, body = self._get(f"/api/v3/traces/{normalize_trace_id(trace_id_hex)}")
        return None if status == 404 else body

    def wait_for_trace(self, trace_id_hex: str, predicate: Callable[[dict], bool] = lambda _: True,
                       timeout: float = 30.0, interval: float = 0.2) -> dict:
        """Polls /api/traces/{id} until the trace exists and `predicate(trace)` holds (spans
        arrive in batches, so a trace fills in over time); raises TimeoutError with what was
        last seen otherwise."""
        deadline = time.monotonic() + timeout
        last: dict | None = None
        while True:
            last = self.trace(trace_id_hex)
            if last is not None and predicate(last):
                return last
            if time.monotonic() >= deadline:
                seen = ([(s.service, s.operation, s.span_id, s.parent_span_id)
                         for s in spans_of(last)] if last else "no spans")
                raise TimeoutError(f"trace {trace_id_hex} did not satisfy the predicate within "
                                   f"{timeout}s; last seen: {seen}")
            if self._proc is not None and self._proc.poll() is not None:
                raise JaegerError(f"Jaeger exited ({self._proc.returncode}); its log:\n"
                                  f"{self.log_text()[-4000:]}")
            time.sleep(interval)
