"""Header and metadata names, kept in one place."""

REQUEST_ID = "x-request-id"
API_KEY = "x-api-key"
AUTHORIZATION = "authorization"
# Anthropic-compatible response header carrying the request id.
ANTHROPIC_REQUEST_ID = "request-id"
RETRY_AFTER = "retry-after"
SHOULD_RETRY = "x-should-retry"
# Client-chosen overall timeout for HTTP callers (gRPC callers use deadlines).
TIMEOUT_MS = "x-sluice-timeout-ms"
# Prefix of the rate-limit response headers (Anthropic names: requests and tokens, limit/remaining/reset).
RATE_LIMIT_PREFIX = "anthropic-ratelimit-"
