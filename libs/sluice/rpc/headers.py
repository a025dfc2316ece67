"""Header and metadata names, kept in one place."""

import re
from collections.abc import Callable, Iterable

REQUEST_ID = "x-request-id"
API_KEY = "x-api-key"
AUTHORIZATION = "authorization"
# Anthropic-compatible response header carrying the request id.
ANTHROPIC_REQUEST_ID = "request-id"
RETRY_AFTER = "retry-after"
# The API version and beta features a client asks for; both go upstream.
ANTHROPIC_VERSION = "anthropic-version"
ANTHROPIC_BETA = "anthropic-beta"
SHOULD_RETRY = "x-should-retry"
# Client-chosen overall timeout for HTTP callers (gRPC callers use deadlines).
TIMEOUT_MS = "x-sluice-timeout-ms"
# interactive (default), batch or background: lowers a request's importance
# when Sluice sheds load.
PRIORITY = "x-sluice-priority"
PRIORITIES = ("interactive", "batch", "background")
# On answers: the deployment that served (deployments file id).
DEPLOYMENT = "x-sluice-deployment"
# On answers: the routing decision, `key=value` pairs joined by "; " (policy,
# version, task, complexity, tier, reason, model, cost_shift, experiment, arm,
# affinity: the deployment a warm prompt prefix drew the request to).
ROUTE = "x-sluice-route"
# On requests: the response cache mode, read-write, read-only or off
# (CACHE_MODES); on answers: hit, miss or bypass.
CACHE = "x-sluice-cache"
CACHE_MODES = ("read-write", "read-only", "off")
# On requests: the client's prompt version tag (part of the cache key, so a
# new version never gets an old answer).
PROMPT_VERSION = "x-sluice-prompt-version"
# What a prompt version tag may be: 1 to 128 letters, digits and ._:/+-,
# starting with a letter or digit (v7, 2026-11-30, support/v3+hotfix).
PROMPT_VERSION_FORMAT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}$")
# On answers from the cache (or shared with an identical request in
# flight): the request id that produced the answer.
CACHE_ORIGIN = "x-sluice-cache-origin"
# On answers to requests with cache_control marks: the prompt-cache forecast
# for the deployment first in line, `read=N; write=N`, and any warnings
# (`warning=short_prefix,volatile_prefix`).
PROMPT_CACHE = "x-sluice-prompt-cache"
# On answers, when tracing is on: the request's OpenTelemetry trace id (32
# hex digits), as recorded on its audit event.
TRACE_ID = "x-sluice-trace-id"
# The x-sluice-* request headers that set a request's options.
OPTIONS = (PRIORITY, CACHE, PROMPT_VERSION)
# Prefix of the rate-limit response headers (Anthropic names: requests and tokens, limit/remaining/reset).
RATE_LIMIT_PREFIX = "anthropic-ratelimit-"
# Set by Sluice's ext_authz on requests it let through Envoy, for the
# ratelimit descriptors; Envoy overwrites whatever a client sent.
TENANT = "x-sluice-tenant"
KEY_ID = "x-sluice-key-id"


def presented_api_key(get: Callable[[str], str | None]) -> str:
    """The key a caller presented: x-api-key, else an `authorization: Bearer`
    token (as the Anthropic SDK's auth_token sends it); "" when neither."""
    key = get(API_KEY)
    if key is None:
        key = bearer_token(get(AUTHORIZATION) or "") or ""
    # As valid text the key check refuses it like any other malformed key.
    return as_text(key)


def presented_api_keys(getall: Callable[[str], Iterable[str]]) -> set[str]:
    """Every distinct key a caller presented, in any x-api-key and any Bearer token: more
    than one means the headers disagree on who is calling."""
    keys = {key.strip() for key in getall(API_KEY)}
    return keys | {token for value in getall(AUTHORIZATION) if (token := bearer_token(value)) is not None}


def bearer_token(authorization: str) -> str | None:
    """The token of an `authorization: Bearer <token>` value; None for any other scheme."""
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else None


def as_text(value: str) -> str:
    """A header value as text any protobuf string can carry: bytes that were
    not UTF-8 arrive surrogate-escaped from the HTTP layer and become U+FFFD."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
