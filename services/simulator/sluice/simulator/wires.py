"""The three provider wires a simulated deployment answers on: what differs
between them once a request is in hand. Each wire turns its request into
a Messages API body and version (`admit`), words refusals its own way
(`error`), frames streams its own way (`stream_headers`, `encoder`) and
decides what ``usage.inference_geo`` says (`inference_geo`); everything
else (the API's rules, scripts, directives, pacing) is shared.

- `AnthropicWire`: the Messages API itself (``x-api-key`` or bearer auth,
  ``anthropic-version`` header, SSE, the API's error JSON).
- `VertexWire`: `vertex.py` (bearer token, body ``anthropic_version``,
  model in the path, SSE, the API's error JSON).
- `BedrockWire`: `bedrock.py` and `sigv4.py` (SigV4, body
  ``anthropic_version``, model in the path, AWS event-stream framing,
  Bedrock's error JSON).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sluice.catalog.catalog import Catalog, ModelEntry
from sluice.config.simulator import SimulatedDeployment
from sluice.simulator import bedrock, sigv4, vertex
from sluice.simulator.eventstream import SseToEventStream
from sluice.simulator.rules import ApiError, check_auth, check_version

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def request_id() -> str:
    return "req_sim_" + secrets.token_hex(8)


def api_error(problem: ApiError) -> web.Response:
    """The API's error JSON (``{"type":"error","error":{type, message},"request_id"}``)."""
    rid = request_id()
    body = {"type": "error", "error": {"type": problem.error_type, "message": problem.message},
            "request_id": rid}
    return web.json_response(body, status=problem.status, headers={"request-id": rid, **problem.headers})


def api_headers(request: web.Request) -> str:
    """Checks the Messages API's auth and version headers; the version."""
    check_auth(request.headers.get("x-api-key"), request.headers.get("authorization"))
    # A header sent twice reads as one comma-joined value, as the API saw
    # it in https://github.com/decolua/9router/issues/2357.
    versions = request.headers.getall("anthropic-version", [])
    return check_version(", ".join(versions) if versions else None)


def _identity(data: bytes) -> bytes:
    return data


class AnthropicWire:
    provider = "anthropic"

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.location = ""

    def admit(self, request: web.Request, raw: bytes, doc: Any, problem: ApiError | None,
              catalog: Catalog) -> tuple[str, Any]:
        """(API version, Messages API body), or ApiError: the wire's own
        checks, then the body's parse error if any."""
        version = api_headers(request)
        if problem is not None:
            raise problem
        return version, doc

    def error(self, problem: ApiError) -> web.Response:
        return api_error(problem)

    def answer_headers(self) -> dict[str, str]:
        return {"request-id": request_id()}

    def stream_headers(self) -> dict[str, str]:
        return {**SSE_HEADERS, **self.answer_headers()}

    def encoder(self) -> Callable[[bytes], bytes]:
        """Turns the SSE bytes the simulator writes into the wire's stream bytes."""
        return _identity

    def inference_geo(self, doc: dict[str, Any], entry: ModelEntry, profile: SimulatedDeployment) -> str | None:
        """The request's inference_geo (echoed), else the deployment's, else
        "global" for models that take the field."""
        return doc.get("inference_geo") or profile.inference_geo or (
            "global" if entry.accepts.inference_geo else None)


class VertexWire(AnthropicWire):
    provider = "vertex"

    def __init__(self, deployment: str, tail: str, region: str) -> None:
        super().__init__(deployment)
        self.tail = tail
        self.region = region
        self.location = vertex.location_of(tail)
        self.count_tokens = tail.endswith("/models/" + vertex.COUNT_TOKENS + ":rawPredict")

    def admit(self, request: web.Request, raw: bytes, doc: Any, problem: ApiError | None,
              catalog: Catalog) -> tuple[str, Any]:
        path = vertex.parse_path(self.tail)
        vertex.check_token(request.headers.get("authorization"))
        vertex.check_location(path, self.region, self.deployment)
        if problem is not None:
            raise problem
        return vertex.to_api(doc, path, catalog)

    def inference_geo(self, doc: dict[str, Any], entry: ModelEntry, profile: SimulatedDeployment) -> str | None:
        # Vertex's usage has no inference_geo; a profile sets one to fake a residency violation.
        return profile.inference_geo or None


class BedrockWire(AnthropicWire):
    provider = "bedrock"

    def __init__(self, deployment: str, model_id: str, streaming: bool, region: str,
                 credentials: dict[str, str], authorization: str | None) -> None:
        super().__init__(deployment)
        self.model_id = model_id
        self.streaming = streaming
        self.region = region
        self.credentials = credentials
        self.location = sigv4.region_of(authorization)

    def admit(self, request: web.Request, raw: bytes, doc: Any, problem: ApiError | None,
              catalog: Catalog) -> tuple[str, Any]:
        # The scheme is not signed; the Host header and the raw path and query are.
        sigv4.check(method=request.method, url=f"http://{request.host}{request.raw_path}",
                    headers=request.headers.items(), body=raw, authorization=request.headers.get("authorization"),
                    amz_date=request.headers.get("x-amz-date"), region=self.region, credentials=self.credentials)
        if problem is not None:
            raise problem
        return bedrock.to_api(doc, self.model_id, self.streaming, catalog)

    def error(self, problem: ApiError) -> web.Response:
        status, body, headers = bedrock.error_body(problem)
        return web.json_response(body, status=status, headers={**self.answer_headers(), **headers})

    def answer_headers(self) -> dict[str, str]:
        return {"x-amzn-RequestId": request_id()}

    def stream_headers(self) -> dict[str, str]:
        return {"content-type": "application/vnd.amazon.eventstream",
                "x-amzn-bedrock-content-type": "application/json", **self.answer_headers()}

    def encoder(self) -> Callable[[bytes], bytes]:
        return SseToEventStream().feed

    def inference_geo(self, doc: dict[str, Any], entry: ModelEntry, profile: SimulatedDeployment) -> str | None:
        return profile.inference_geo or None
