"""The three providers, each through the `anthropic` SDK's own client class.

One deployment is one `ProviderUpstream`: an `AsyncAnthropic` (the Anthropic
API), `AsyncAnthropicVertex` (Google Vertex AI) or `AsyncAnthropicBedrock`
(Amazon Bedrock) client for the deployment's endpoint region. The SDK client
builds the URL from its base, authenticates (API key; Google application
default credentials; AWS SigV4 from the default credential chain), applies
the connect timeout and raises its typed errors for a failed status. What
differs per provider is the `_Dialect`: the path, the members Sluice sets in
the body, and the stream's framing:

- Anthropic API: POST /v1/messages, `model` and `"stream": true` in the
  body, the client's anthropic-version and anthropic-beta as headers, the
  deployment's `inference_geo` in the body when it has one; SSE.
- Vertex AI: POST .../locations/{region}/publishers/anthropic/models/
  {model}:streamRawPredict, no `model` in the body, `anthropic_version` in
  it ("vertex-2023-10-16" for the 2023-06-01 API), betas as the
  anthropic-beta header; SSE. Count tokens at .../count-tokens:rawPredict.
- Bedrock: POST /model/{model}/invoke-with-response-stream, no `model` or
  `stream` in the body, `anthropic_version` ("bedrock-2023-05-31") and
  `anthropic_beta` in it; AWS event-stream framing, each chunk's `bytes` one
  Messages API event (decoded with botocore's EventStreamBuffer). Bedrock
  cannot count tokens.

The body is the client's JSON as bytes (the wire codec's template) with
those members put first; everything else is exactly what the client sent.
The answer's events pass through as the provider sent them; the one edit is
message_start's model, set to the catalog id of the candidate.

The SDK's retries are off (max_retries=0): the inference core owns retries,
fallback and hedging, and must not retry after the first event. Clients use
the SDK's aiohttp transport (`DefaultAioHttpClient`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import anthropic
import httpx2
from anthropic import NOT_GIVEN
from anthropic._constants import RAW_RESPONSE_HEADER
from botocore.eventstream import EventStreamBuffer
from botocore.eventstream import ParserError as EventStreamError
from botocore.exceptions import BotoCoreError
from google.auth.exceptions import GoogleAuthError

from sluice.catalog.deployments import Deployment
from sluice.llm.v1 import wire_pb2
from sluice.routing.v1 import candidate_pb2
from sluice.rpc.errors import UPSTREAM_STATUS, UPSTREAM_TYPE, FieldViolation, Reason, SluiceError
from sluice.telemetry import tracing
from sluice.wire import events as ev
from sluice.wire import jsontext
from sluice.wire.request import LATEST_VERSION, VERSION_2023, upstream_body

log = logging.getLogger(__name__)
# The API names the field first in a refusal: "max_tokens: 9 > 8, ...".
_FIELD_FIRST = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*): ")
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# The simulator's credentials (services/simulator), used only with
# inference.simulator_url when the environment names none.
SIM_API_KEY = "sk-simulator"
SIM_VERTEX_TOKEN = "sim-vertex-local"
SIM_AWS_KEY, SIM_AWS_SECRET = "AKIASLUICESIM", "sluice-sim-secret"
SIM_VERTEX_PROJECT = "sluice-sim"
# Upstream HTTP status -> reason. The upstream's refusals of the request
# itself (400, 404, 413, 422) reach the client with their own status and
# message; 401/403 are Sluice's credentials, not the client's doing.
_STATUS_REASON = {
    400: Reason.UPSTREAM_REJECTED, 401: Reason.UPSTREAM_ERROR, 403: Reason.UPSTREAM_ERROR,
    404: Reason.UPSTREAM_NOT_FOUND, 413: Reason.UPSTREAM_TOO_LARGE, 422: Reason.UPSTREAM_REJECTED,
    429: Reason.UPSTREAM_RATE_LIMITED, 529: Reason.UPSTREAM_OVERLOADED,
}
_ERROR_TYPE_REASON = {
    "overloaded_error": Reason.UPSTREAM_OVERLOADED,
    "rate_limit_error": Reason.UPSTREAM_RATE_LIMITED,
    "invalid_request_error": Reason.UPSTREAM_REJECTED,
    "not_found_error": Reason.UPSTREAM_NOT_FOUND,
    "request_too_large": Reason.UPSTREAM_TOO_LARGE,
}
# Set on an attempt's error when the upstream said not to retry it
# (`x-should-retry: false`, which the SDKs honour too).
NO_RETRY = "upstream_no_retry"


class ProviderUpstream:
    """One deployment: its SDK client and its provider's dialect.

    `stream` and `count_tokens` raise SluiceError with an UPSTREAM_* reason
    (or DEADLINE_EXCEEDED): for a failed status before the stream, a broken
    connection, or an error after the stream began (its type and message
    kept)."""

    def __init__(self, deployment_id: str, deployment: Deployment, client: anthropic.AsyncAnthropic | Any,
                 ) -> None:
        self.deployment_id = deployment_id
        self.deployment = deployment
        self._client = client
        self._dialect = _DIALECTS[deployment.provider]
        self.can_count_tokens = self._dialect.can_count_tokens

    async def aclose(self) -> None:
        await self._client.close()

    async def _post(self, path: str, body: bytes, headers: dict[str, str], timeout: float | None) -> httpx2.Response:
        """Sends `body` to `path`; the raw response, its body unread."""
        headers = {**headers, RAW_RESPONSE_HEADER: "stream"}
        if tracing.PROPAGATE_UPSTREAM:
            headers.update(tracing.inject())  # the attempt's span (see core._Attempt.first_token)
        try:
            return await self._client.post(path, cast_to=httpx2.Response, content=body,
                                           options={"headers": headers, "timeout": timeout})
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from None
        except anthropic.APITimeoutError:
            raise SluiceError(Reason.DEADLINE_EXCEEDED, "upstream did not answer in time") from None
        except (anthropic.APIConnectionError, httpx2.TransportError, aiohttp.ClientError) as exc:
            raise self._unreachable(exc) from None
        except anthropic.APIError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream error: {exc.message}") from None
        except (BotoCoreError, RuntimeError, GoogleAuthError) as exc:
            # Credentials that cannot be found or refreshed (SigV4, Google ADC).
            log.error("deployment %s: credentials: %s", self.deployment_id, exc)
            raise SluiceError(Reason.UPSTREAM_UNAVAILABLE,
                              f"deployment {self.deployment_id} could not authenticate to its provider") from None

    def _unreachable(self, exc: BaseException) -> SluiceError:
        """A broken connection: the details (addresses) go to the log, the
        client hears which deployment failed."""
        log.warning("deployment %s: connection failed: %s", self.deployment_id, _describe(exc))
        return SluiceError(Reason.UPSTREAM_UNAVAILABLE, f"connection to deployment {self.deployment_id} failed")

    async def stream(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
                     timeout: float | None) -> AsyncIterator[ev.Event]:
        """The candidate's answer as Messages API events (message_start's
        model set to the candidate's id), read from the provider's stream
        (SSE, or Bedrock's event stream) as it arrives; the request goes out
        in the provider's dialect (path, body, headers). `timeout`: seconds
        for the call, None for none. Raises SluiceError: the upstream's
        status mapped to an UPSTREAM_* reason (its error type and message
        kept), UPSTREAM_UNAVAILABLE for a broken connection or credentials
        that cannot be had, DEADLINE_EXCEEDED, UPSTREAM_ERROR for an error
        event or a malformed one mid-stream."""
        d = self._dialect
        response = await self._post(d.messages_path(self, candidate), d.messages_body(candidate, request),
                                    d.headers(request), timeout)
        try:
            async for event in d.events(response.aiter_bytes()):
                if event.type == ev.ERROR:
                    raise _stream_error(event)
                if event.type == ev.MESSAGE_START:
                    event = ev.with_message_model(event, candidate.model_id)
                yield event
        except (httpx2.TransportError, aiohttp.ClientError) as exc:
            raise self._unreachable(exc) from None
        except ValueError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream sent a malformed event: {exc}") from None
        finally:
            await response.aclose()

    async def count_tokens(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
                           timeout: float | None) -> tuple[int, bytes]:
        """(input_tokens, the answer's JSON) from the provider's own count.
        Raises SluiceError as `stream` does, NO_UPSTREAM for a provider that
        cannot count, or UPSTREAM_ERROR for an answer without an integer
        input_tokens."""
        d = self._dialect
        if not d.can_count_tokens:
            raise SluiceError(Reason.NO_UPSTREAM, f"{self.deployment.provider} cannot count tokens")
        response = await self._post(d.count_path(self, candidate), d.count_body(candidate, request),
                                    d.headers(request), timeout)
        try:
            raw = await response.aread()
        except (httpx2.TransportError, aiohttp.ClientError) as exc:
            raise self._unreachable(exc) from None
        finally:
            await response.aclose()
        try:
            answer = json.loads(raw)
            tokens = answer["input_tokens"]
            if not isinstance(tokens, int) or isinstance(tokens, bool):
                raise TypeError("input_tokens is not an integer")
        except (ValueError, KeyError, TypeError) as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream count_tokens answer is malformed: {exc}") from None
        return tokens, raw

    @property
    def project_id(self) -> str:
        return getattr(self._client, "project_id", "") or ""


def _template(request: wire_pb2.WireRequest, drop: frozenset[str]) -> bytes:
    """The request's template without members this provider sets or refuses.
    Scans the body only when one of them is written in it (rare: the
    template already lacks model and stream)."""
    body = request.body
    if not any(f'"{name}"'.encode() in body for name in drop):
        return body
    text = body.decode("utf-8")
    members, _ = jsontext.object_members(text)
    return jsontext.without_members(text, members, set(drop)).encode("utf-8")


_GEO = frozenset({"inference_geo"})
# Members Vertex and Bedrock take from Sluice, never from the client's body
# (a duplicate key would let the client's win at the provider).
# Betas come only from the anthropic-beta header (checked by the gateway).
_VERTEX_SETS = frozenset({"inference_geo", "anthropic_version", "anthropic_beta"})


class _Dialect:
    """What one provider's wire needs beyond the SDK client."""

    can_count_tokens = True

    def headers(self, request: wire_pb2.WireRequest) -> dict[str, str]:
        headers = {"anthropic-version": request.anthropic_version or LATEST_VERSION,
                   "content-type": "application/json"}
        if request.anthropic_beta:
            headers["anthropic-beta"] = ",".join(request.anthropic_beta)
        return headers

    def events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[ev.Event]:
        return ev.sse_events(chunks)

    def messages_path(self, upstream: ProviderUpstream, candidate: candidate_pb2.Candidate) -> str:
        return MESSAGES_PATH

    def count_path(self, upstream: ProviderUpstream, candidate: candidate_pb2.Candidate) -> str:
        return COUNT_TOKENS_PATH

    def messages_body(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest) -> bytes:
        return self._body(candidate, request, [("model", candidate.upstream_model), ("stream", True)])

    def count_body(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest) -> bytes:
        return self._body(candidate, request, [("model", candidate.upstream_model)])

    def _body(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
              leading: list[tuple[str, Any]]) -> bytes:
        """The client's body with `leading` members (and those this wire
        always sets) put first."""
        if candidate.inference_geo:
            # The deployment's geography wins over whatever the client asked.
            return upstream_body(_template(request, _GEO), [*leading, ("inference_geo", candidate.inference_geo)])
        return upstream_body(request.body, leading)


class _VertexDialect(_Dialect):
    # The body's anthropic_version per API version (Vertex's name for 2023-06-01).
    VERSIONS: ClassVar[dict[str, str]] = {VERSION_2023: "vertex-2023-10-16"}

    def headers(self, request: wire_pb2.WireRequest) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if request.anthropic_beta:
            headers["anthropic-beta"] = ",".join(request.anthropic_beta)
        return headers

    def _base(self, upstream: ProviderUpstream, candidate: candidate_pb2.Candidate) -> str:
        if not upstream.project_id:
            raise SluiceError(Reason.UPSTREAM_UNAVAILABLE,
                              f"deployment {upstream.deployment_id} has no Google Cloud project configured")
        return (f"/projects/{_segment(upstream.project_id)}/locations/{_segment(candidate.region)}"
                f"/publishers/anthropic/models/")

    def messages_path(self, upstream: ProviderUpstream, candidate: candidate_pb2.Candidate) -> str:
        return self._base(upstream, candidate) + _segment(candidate.upstream_model) + ":streamRawPredict"

    def count_path(self, upstream: ProviderUpstream, candidate: candidate_pb2.Candidate) -> str:
        return self._base(upstream, candidate) + "count-tokens:rawPredict"

    def version(self, request: wire_pb2.WireRequest) -> str:
        version = request.anthropic_version or LATEST_VERSION
        return self.VERSIONS.get(version, version)

    def messages_body(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest) -> bytes:
        return self._body(candidate, request, [("stream", True)])  # the model is in the path

    def _body(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
              leading: list[tuple[str, Any]]) -> bytes:
        return upstream_body(_template(request, _VERTEX_SETS), [("anthropic_version", self.version(request)),
                                                                 *leading])


class _BedrockDialect(_VertexDialect):
    VERSIONS: ClassVar[dict[str, str]] = {VERSION_2023: "bedrock-2023-05-31"}
    can_count_tokens = False
    # Bedrock's in-stream exceptions (its event-stream `:exception-type`).
    EXCEPTIONS: ClassVar[dict[str, str]] = {
        "throttlingException": "rate_limit_error",
        "serviceUnavailableException": "overloaded_error",
        "modelStreamErrorException": "api_error",
        "internalServerException": "api_error",
        "validationException": "invalid_request_error",
    }

    def headers(self, request: wire_pb2.WireRequest) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}

    def messages_path(self, upstream: ProviderUpstream, candidate: candidate_pb2.Candidate) -> str:
        return f"/model/{urllib.parse.quote(candidate.upstream_model, safe=':')}/invoke-with-response-stream"

    def messages_body(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest) -> bytes:
        # Model and stream are in the path; the betas travel in the body.
        betas = list(request.anthropic_beta)
        return self._body(candidate, request, [("anthropic_beta", betas)] if betas else [])

    async def events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[ev.Event]:
        """The Messages API events inside an AWS event stream: each `chunk`
        event's JSON payload holds one event's JSON, base64, under `bytes`;
        an `exception` message becomes the API's `error` event."""
        frames = EventStreamBuffer()
        async for chunk in chunks:
            frames.add_data(chunk)
            try:
                messages = list(frames)
            except EventStreamError as exc:  # a bad prelude, length or checksum
                raise ValueError(f"malformed AWS event stream: {exc}") from None
            for message in messages:
                headers = message.headers
                kind = headers.get(":message-type")
                if kind == "event" and headers.get(":event-type") == "chunk":
                    payload = jsontext.read(message.payload)
                    data = base64.b64decode(payload["bytes"]) if isinstance(payload, dict) else b""
                    event = ev.Event("", data)
                    event.type = str(event.view.get("type") or "")
                    yield event
                elif kind in ("exception", "error"):
                    name = str(headers.get(":exception-type") or headers.get(":error-code") or "")
                    try:
                        text = str((jsontext.read(message.payload) or {}).get("message") or name)
                    except ValueError:
                        text = name
                    yield ev.error(self.EXCEPTIONS.get(name, "api_error"), text)


_DIALECTS: dict[str, _Dialect] = {"anthropic": _Dialect(), "vertex": _VertexDialect(), "bedrock": _BedrockDialect()}


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="@")


def build_upstream(deployment_id: str, deployment: Deployment, *, simulator_url: str, base_url: str,
                   connect_timeout_s: float, max_connections: int) -> ProviderUpstream:
    """The deployment's SDK client, credentials from the provider's usual
    sources (named by the deployment's `credentials`). With `simulator_url`
    every deployment is reached at <simulator_url>/d/<id> and, where the
    environment names no credentials, with the simulator's. Raises
    ValueError when a required setting (a Vertex project) is missing."""
    creds = deployment.credentials
    if simulator_url and not base_url:
        base_url = f"{simulator_url.rstrip('/')}/d/{deployment_id}" + ("/v1" if deployment.provider == "vertex" else "")
    common: dict[str, Any] = {
        "base_url": base_url or None, "max_retries": 0,
        "timeout": anthropic.Timeout(None, connect=connect_timeout_s),
        # The SDK's OpenTelemetry spans cost ~0.5 ms per call on the critical path.
        "open_telemetry": False,
        # The SDK's aiohttp transport: its C HTTP parser costs a fraction of
        # the default pure-Python one on every streamed chunk.
        "http_client": anthropic.DefaultAioHttpClient(
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)),
    }
    if deployment.provider == "anthropic":
        key = os.environ.get(creds.api_key_env or "ANTHROPIC_API_KEY", "")
        client: Any = anthropic.AsyncAnthropic(api_key=key or (SIM_API_KEY if simulator_url else "unset"), **common)
    elif deployment.provider == "vertex":
        project = creds.project_id or os.environ.get(creds.project_id_env or "ANTHROPIC_VERTEX_PROJECT_ID", "")
        token, google_creds = None, None
        if simulator_url and not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            token, project = SIM_VERTEX_TOKEN, project or SIM_VERTEX_PROJECT
        else:
            # Application default credentials (a key file, gcloud, workload
            # identity), loaded once; the project from them unless set.
            # Missing ones do not stop the start: this deployment's calls
            # fail (and fall back) until they are there.
            try:
                google_creds, found = _google_default()
                project = project or found or ""
            except ValueError as exc:
                log.error("deployment %s: %s; its calls will fail until credentials are available",
                          deployment_id, exc)
        if not project:
            log.error("deployment %s: no Google Cloud project (set credentials.project_id or $%s); its calls "
                      "will fail", deployment_id, creds.project_id_env or "ANTHROPIC_VERTEX_PROJECT_ID")
        client = anthropic.AsyncAnthropicVertex(region=deployment.region, project_id=project or NOT_GIVEN,
                                                access_token=token, credentials=google_creds, **common)
    else:
        aws: dict[str, Any] = {"aws_region": deployment.region}
        if creds.aws_profile:
            aws["aws_profile"] = creds.aws_profile
        elif simulator_url and not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
            aws.update(aws_access_key=SIM_AWS_KEY, aws_secret_key=SIM_AWS_SECRET)
        client = anthropic.AsyncAnthropicBedrock(**aws, **common)
    return ProviderUpstream(deployment_id, deployment, client)


def _google_default() -> tuple[Any, str | None]:
    """google.auth.default() with the cloud-platform scope: (credentials,
    project). Raises ValueError when no credentials can be found."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError as exc:
        raise ValueError(f"Vertex AI needs Google application default credentials: {exc}") from None


def _stream_error(event: ev.Event) -> SluiceError:
    """An `error` event after the stream started (HTTP 200 already sent):
    its type and message, as the upstream gave them."""
    err_type, message = _error_body(event.view)
    reason = _ERROR_TYPE_REASON.get(err_type, Reason.UPSTREAM_ERROR)
    return SluiceError(reason, message or "upstream stream error", metadata={UPSTREAM_TYPE: err_type or "api_error"})


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {cause or exc}"


def _error_body(body: Any) -> tuple[str, str]:
    """(type, message) from Anthropic's error JSON (Vertex sends the same),
    or Bedrock's `{"message": ...}`, tolerating any shape."""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    if not isinstance(error, dict):
        return "", str(body.get("message") or body.get("Message") or "")
    return str(error.get("type") or ""), str(error.get("message") or "")


def _status_error(exc: anthropic.APIStatusError) -> SluiceError:
    """The upstream's failed status as a SluiceError carrying its status,
    type and message (the message verbatim: the client sees the API's words)."""
    err_type, message = _error_body(exc.body)
    reason = _STATUS_REASON.get(exc.status_code) or _ERROR_TYPE_REASON.get(err_type, Reason.UPSTREAM_ERROR)
    if exc.status_code == 503:
        reason = Reason.UPSTREAM_OVERLOADED  # Bedrock's ServiceUnavailableException: its 529
    elif exc.status_code >= 500 and exc.status_code != 529:
        reason = Reason.UPSTREAM_ERROR
    retry_after = None
    header = exc.response.headers.get("retry-after") if exc.response is not None else None
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    metadata = {UPSTREAM_STATUS: str(exc.status_code)}
    if err_type:
        metadata[UPSTREAM_TYPE] = err_type
    if exc.response is not None and exc.response.headers.get("x-should-retry", "").lower() == "false":
        metadata[NO_RETRY] = "true"
    message = message or exc.message
    field = _FIELD_FIRST.match(message) if exc.status_code in (400, 413, 422) else None
    violations = [FieldViolation(field.group(1), message[field.end():])] if field else []
    return SluiceError(reason, message, field_violations=violations, retry_after_s=retry_after, metadata=metadata)
