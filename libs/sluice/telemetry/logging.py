"""Process logging: one line per record, request id attached when known."""

from __future__ import annotations

import logging
import sys
import time

from aiohttp.http_exceptions import HttpProcessingError

from sluice import call_context as context
from sluice.telemetry import metrics


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        record.request_id = ctx.request_id if ctx else "-"
        return True


class _Throttle:
    """At most one record per key every `interval_s` seconds; what it drops
    is counted in metrics where it matters (malformed HTTP, trace export)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self._interval = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, key: tuple[str, str]) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        if len(self._last) > 1024:  # keys come from code, not clients; a bound all the same
            self._last.clear()
        self._last[key] = now
        return True


class _LibraryNoiseFilter(logging.Filter):
    """The OpenTelemetry SDK logs every failed export (a collector that is
    down: several lines a second under load) and every malformed trace
    header it meets: one line per kind a minute is enough."""

    def __init__(self) -> None:
        super().__init__()
        self._throttle = _Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("opentelemetry"):
            return True
        return self._throttle.allow((record.name, str(record.msg)))


class _MalformedHttpFilter(logging.Filter):
    """aiohttp refuses malformed HTTP (bad header bytes, over-long lines)
    with a 400 before any Sluice handler runs, and logs each one with a full
    traceback at ERROR (or, for a bad method, at DEBUG): anyone could fill
    the log. Such refusals are counted, and logged as one WARNING line per
    kind a minute instead."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self._level = level
        self._throttle = _Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            # The logger is opened to DEBUG only so that aiohttp's debug-level
            # refusals (a bad method: TLS or junk on the port) reach this
            # filter; its other debug records stay below the process level.
            return record.levelno >= self._level
        metrics.HTTP_MALFORMED.labels(type(exc).__name__).inc()
        if not self._throttle.allow((type(exc).__name__, "")):
            return False  # counted; one line per kind a minute
        reason = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
        record.msg, record.args = "refused malformed HTTP (%s): %s", (type(exc).__name__, reason[:200])
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.addFilter(_LibraryNoiseFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDK's HTTP client logs every request at INFO.
    for noisy in ("httpx", "httpx2", "anthropic", "aiohttp.access", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server_log = logging.getLogger("aiohttp.server")
    server_log.filters[:] = [f for f in server_log.filters if not isinstance(f, _MalformedHttpFilter)]
    server_log.addFilter(_MalformedHttpFilter(logging.getLevelName(level)))
    server_log.setLevel(logging.DEBUG)
