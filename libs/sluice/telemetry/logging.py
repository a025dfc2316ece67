"""Process logging: one line per record, request id attached when known."""

from __future__ import annotations

import logging
import sys

from sluice.rpc import context


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        record.request_id = ctx.request_id if ctx else "-"
        return True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDK's HTTP client logs every request at INFO.
    for noisy in ("httpx", "httpx2", "anthropic", "aiohttp.access", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
