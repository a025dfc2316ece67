"""What arrived: every request to /v1/messages and /v1/messages/count_tokens
(and their Vertex and Bedrock counterparts), recorded before any check, so a test can compare what a gateway sent
upstream with what its client sent (``GET /_sim/requests``).

A record: ``{"seq", "path", "method", "deployment", "provider",
"location", "headers", "body", "script", "status", "outcome"}``.
``deployment`` is the ``/d/{deployment}`` the request came to ("default"
for the unprefixed routes), ``provider`` its wire ("anthropic", "vertex",
"bedrock"), ``location`` the Vertex path's location or the SigV4 credential
scope's region ("" on the Anthropic wire, or when absent), ``outcome``
the deployment's draw (`deployments.Outcome.label`: "ok", "slow",
"midstream", "529", ...; null when none was drawn: refused by the rules,
count_tokens). ``headers`` holds ``anthropic-version``, ``anthropic-beta``
(null when absent), ``content-type``, any other ``anthropic-*`` header, and
``authorization`` / ``x-api-key`` as booleans (present or not; never the
values). ``body`` is the body text exactly as received (when it is not
UTF-8: decoded with replacement characters, and ``body_base64`` holds the
bytes). ``script`` is the id named by ``[[sim:script=...]]`` (or null),
``status`` the HTTP status answered (null while in progress, or when the
connection was dropped without an answer). At most ``recorded_requests``
records and MAX_RECORDED_CHARS of body text are kept, oldest dropped.
"""

from __future__ import annotations

import base64
from collections import deque
from typing import Any

from aiohttp import web

# Body text kept at most, over all records (oldest dropped first), so a
# soak or bench run with large prompts does not grow without bound.
MAX_RECORDED_CHARS = 256 * 1024 * 1024


class Recorder:
    def __init__(self, limit: int, max_chars: int = MAX_RECORDED_CHARS) -> None:
        self._records: deque[dict[str, Any]] = deque()
        self._limit = max(limit, 0)
        self._max_chars = max_chars
        self._chars = 0
        self._seq = 0

    def record(self, request: web.Request, raw: bytes, script: str | None, *, deployment: str = "default",
               provider: str = "anthropic", location: str = "") -> dict[str, Any]:
        """Records a request; the record (its `status` and `outcome` are set later)."""
        self._seq += 1
        headers: dict[str, Any] = {"anthropic-version": _header(request, "anthropic-version"),
                                   "anthropic-beta": _header(request, "anthropic-beta"),
                                   "content-type": _header(request, "content-type")}
        for name in sorted({k.lower() for k in request.headers if k.lower().startswith("anthropic-")}):
            headers.setdefault(name, _header(request, name))
        if "traceparent" in request.headers:  # W3C trace context, when the caller propagates it
            headers["traceparent"] = _header(request, "traceparent")
        headers["authorization"] = "authorization" in request.headers
        headers["x-api-key"] = "x-api-key" in request.headers
        try:
            body = raw.decode("utf-8")
            extra: dict[str, Any] = {}
        except UnicodeDecodeError:
            body = raw.decode("utf-8", "replace")
            extra = {"body_base64": base64.b64encode(raw).decode("ascii")}
        entry = {"seq": self._seq, "path": request.path, "method": request.method, "deployment": deployment,
                 "provider": provider, "location": location, "headers": headers, "body": body, **extra,
                 "script": script, "status": None, "outcome": None}
        if self._limit:
            self._records.append(entry)
            self._chars += len(body)
            while len(self._records) > self._limit or (self._chars > self._max_chars and len(self._records) > 1):
                self._chars -= len(self._records.popleft()["body"])
        return entry

    def query(self, script: str | None = None, last: int | None = None, *,
              deployment: str | None = None) -> list[dict[str, Any]]:
        """Records oldest first: those naming `script` and sent to
        `deployment` (each when given), the last `last` of them."""
        found = [r for r in self._records if (script is None or r["script"] == script)
                 and (deployment is None or r["deployment"] == deployment)]
        if last is not None:
            found = found[-last:] if last > 0 else []
        return found


def _header(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    return ",".join(values) if values else None
