"""Prometheus metrics. One registry per process, scraped from /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RPC_HANDLED = Counter(
    "sluice_rpc_handled_total",
    "RPCs handled by a Sluice service, by final status code.",
    ["service", "method", "code"],
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "sluice_rpc_handling_seconds",
    "Time to handle an RPC (for streams: until the stream ends).",
    ["service", "method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "sluice_errors_total",
    "Errors returned to a caller, by the service that raised them and reason.",
    ["service", "reason"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "sluice_http_requests_total",
    "Requests on the Anthropic-compatible HTTP facade, by status and error type.",
    ["route", "status", "error_type"],
    registry=REGISTRY,
)
HTTP_MALFORMED = Counter(
    "sluice_http_malformed_requests_total",
    "Requests refused with 400 by the HTTP parser before any handler ran (bad header bytes, over-long lines), by error.",
    ["error"],
    registry=REGISTRY,
)
UPSTREAM_ATTEMPTS = Counter(
    "sluice_upstream_attempts_total",
    "Upstream model calls, by deployment, provider, model and outcome (served, an error reason, "
    "cancelled, continued).",
    ["deployment", "provider", "model", "outcome"],
    registry=REGISTRY,
)
UPSTREAM_TTFT_SECONDS = Histogram(
    "sluice_upstream_time_to_first_token_seconds",
    "Time from sending the upstream request to its first token (or its end, for an answer without one).",
    ["deployment", "model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "sluice_deployment_breaker_state",
    "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open.",
    ["deployment"],
    registry=REGISTRY,
)
BREAKER_TRANSITIONS = Counter(
    "sluice_deployment_breaker_transitions_total",
    "Circuit breaker state changes per deployment, by the state entered.",
    ["deployment", "state"],
    registry=REGISTRY,
)
BREAKER_PANIC = Counter(
    "sluice_deployment_breaker_panic_total",
    "Requests whose every candidate's breaker was open, tried anyway on the first (Envoy's panic threshold).",
    ["deployment"],
    registry=REGISTRY,
)
CONCURRENCY_LIMIT = Gauge(
    "sluice_deployment_concurrency_limit",
    "The adaptive concurrency limit per deployment (AIMD).",
    ["deployment"],
    registry=REGISTRY,
)
DEPLOYMENT_IN_FLIGHT = Gauge(
    "sluice_deployment_in_flight",
    "Upstream calls in flight per deployment.",
    ["deployment"],
    registry=REGISTRY,
)
HEDGES = Counter(
    "sluice_hedges_total",
    "Hedged attempts started on a slow first token, by deployment hedged to and outcome (won, lost, failed).",
    ["deployment", "outcome"],
    registry=REGISTRY,
)
BUDGET_EXHAUSTED = Counter(
    "sluice_retry_budget_exhausted_total",
    "Extra attempts not made because their budget was spent, by kind (retry, hedge).",
    ["kind"],
    registry=REGISTRY,
)
SHED = Counter(
    "sluice_requests_shed_total",
    "Requests refused under overload with 529, by where (gateway, deployment) and shedding class "
    "(0 enterprise .. 3 background).",
    ["where", "shed_class"],
    registry=REGISTRY,
)
GATEWAY_UTILISATION = Gauge(
    "sluice_gateway_utilisation",
    "The gateway's overload signal: max(in-flight / capacity, event-loop lag / threshold).",
    registry=REGISTRY,
)
RESIDENCY_VIOLATIONS = Counter(
    "sluice_residency_violations_total",
    "Answers whose reported inference_geo is outside the tenant's residency, by tenant region, deployment and geo.",
    ["region", "deployment", "geo"],
    registry=REGISTRY,
)
RESIDENCY_REFUSED = Counter(
    "sluice_residency_refused_candidates_total",
    "Candidates inference refused to call because their geography is outside the request's residency.",
    ["deployment"],
    registry=REGISTRY,
)
EVENTS_EMITTED = Counter(
    "sluice_events_emitted_total",
    "Billing and audit events handed to the spool, by kind.",
    ["kind"],
    registry=REGISTRY,
)
EVENTS_RECORD_FAILURES = Counter(
    "sluice_events_record_failures_total",
    "Requests whose billing/audit events could not be written (the spool refused them); each is logged.",
    registry=REGISTRY,
)
EVENTS_QUEUE_OVERFLOW = Counter(
    "sluice_events_queue_overflow_total",
    "Events the request path wrote to the spool itself because the writer's queue was full.",
    registry=REGISTRY,
)
EVENTS_SENT = Counter(
    "sluice_events_sent_total",
    "Events acknowledged by this region's Kafka (acks=all).",
    registry=REGISTRY,
)
EVENTS_SEND_FAILURES = Counter(
    "sluice_events_send_failures_total",
    "Kafka batches not (wholly) acknowledged; their events stay in the spool and are retried.",
    registry=REGISTRY,
)
EVENTS_KAFKA_UP = Gauge(
    "sluice_events_kafka_up",
    "1 while the last send to this region's Kafka succeeded, else 0.",
    registry=REGISTRY,
)
EVENTS_PARTITION_RECORDS = Counter(
    "sluice_events_partition_records_total",
    "Events acknowledged by Kafka, by topic and partition (records are keyed by tenant: "
    "a hot tenant shows as one busy partition).",
    ["topic", "partition"],
    registry=REGISTRY,
)
EVENTS_PARTITION_SKEW = Gauge(
    "sluice_events_partition_skew",
    "Busiest partition's share of a topic's records over the last events.skew_window_seconds, "
    "divided by the even share (1/partitions): 1 is even, the partition count is all on one.",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_TOPIC_PARTITIONS_SHORT = Gauge(
    "sluice_events_topic_partitions_short",
    "Partitions an existing event topic lacks compared with events.partitions (0: enough); "
    "Sluice never repartitions a topic itself.",
    ["topic"],
    registry=REGISTRY,
)
SPOOL_BYTES = Gauge(
    "sluice_event_spool_bytes",
    "Bytes of events in the spool not yet acknowledged by Kafka.",
    registry=REGISTRY,
)
SPOOL_CAPACITY_BYTES = Gauge(
    "sluice_event_spool_capacity_bytes",
    "spool_max_bytes: past it the gateway refuses new requests with 503.",
    registry=REGISTRY,
)
SPOOL_CORRUPT_SEGMENTS = Counter(
    "sluice_event_spool_corrupt_segments_total",
    "Spool segments with a damaged record; the rest of the segment was moved aside for inspection.",
    registry=REGISTRY,
)
SINK_RECORDS = Counter(
    "sluice_sink_records_total",
    "Records read by a regional sink, by what became of them (stored, duplicate, dead_letter).",
    ["outcome"],
    registry=REGISTRY,
)
SINK_PARTITION_RECORDS = Counter(
    "sluice_sink_partition_records_total",
    "Records a regional sink polled from Kafka, by topic and partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
SINK_PARTITION_LAG = Gauge(
    "sluice_sink_partition_lag",
    "Records on a partition not yet polled by its owning sink consumer (high watermark minus "
    "position), as of that consumer's last poll; removed when the partition is revoked.",
    ["topic", "partition"],
    registry=REGISTRY,
)
SINK_PARTITIONS_ASSIGNED = Gauge(
    "sluice_sink_partitions_assigned",
    "Partitions the group assigned to each of this process's sink consumers (sinks.consumers).",
    ["consumer"],
    registry=REGISTRY,
)
SINK_BATCH_SECONDS = Histogram(
    "sluice_sink_batch_seconds",
    "Time to store (fsync) one batch before its offsets are committed.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)
QUOTA_REJECTIONS = Counter(
    "sluice_quota_rejections_total",
    "Requests refused by a limit, by limit (requests, tokens, streams, daily_spend, monthly_spend) and scope.",
    ["limit", "scope"],
    registry=REGISTRY,
)
QUOTA_STORE_UP = Gauge(
    "sluice_quota_store_up",
    "1 while the shared quota store (Redis) answers, 0 while auth is running on its store-down policy.",
    registry=REGISTRY,
)
QUOTA_STORE_DOWN_DECISIONS = Counter(
    "sluice_quota_store_down_decisions_total",
    "Requests decided while the quota store was unreachable, by the tier's policy and outcome "
    "(fail_open: admitted or rate_limited by the local limiter; fail_closed: refused).",
    ["policy", "outcome"],
    registry=REGISTRY,
)
QUOTA_HOT_TENANTS = Gauge(
    "sluice_quota_hot_tenants",
    "Tenants this process serves from slices of their shared buckets (auth.hot_tenant_rps reached).",
    registry=REGISTRY,
)
QUOTA_SLICE_DECISIONS = Counter(
    "sluice_quota_slice_decisions_total",
    "Admissions of hot tenants, by path: local (from a slice held in memory), refill (a slice "
    "leased from the shared store, then used), exact (near the limit: asked of the store per "
    "request), refused (over the limit: refused until the store's last retry-after, without asking).",
    ["path"],
    registry=REGISTRY,
)
QUOTA_SLICES_RETURNED = Counter(
    "sluice_quota_slices_returned_total",
    "Slices whose unused units went back to the shared store (expired, tenant cooled, limit near).",
    registry=REGISTRY,
)
AUTH_STALE_DECISIONS = Counter(
    "sluice_auth_stale_decisions_total",
    "Keys accepted from an expired decision-cache entry because the key store was unreachable.",
    registry=REGISTRY,
)
ENVOY_DECISIONS = Counter(
    "sluice_envoy_decisions_total",
    "Answers to Envoy's ext_authz (Check) and ratelimit (ShouldRateLimit) calls, by outcome or error reason.",
    ["service", "outcome"],
    registry=REGISTRY,
)
QUOTA_SETTLE_FAILURES = Counter(
    "sluice_quota_settle_failures_total",
    "Settlements that could not reach the quota store; the reservation then expires on its own.",
    registry=REGISTRY,
)
SAFETY_VERDICTS = Counter(
    "sluice_safety_verdicts_total",
    "Safety verdicts by stage (input, output) and action (allow, redact, flag, block).",
    ["stage", "action"],
    registry=REGISTRY,
)
SAFETY_RULE_HITS = Counter(
    "sluice_safety_rule_hits_total",
    "Rule matches by stage and rule id (rule ids come from the loaded policy packs).",
    ["stage", "rule_id"],
    registry=REGISTRY,
)
SAFETY_POLICY_RELOADS = Counter(
    "sluice_safety_policy_reloads_total",
    "Policy folder reloads: ok, or rejected (the last good policy stays in force).",
    ["result"],
    registry=REGISTRY,
)
SAFETY_POLICY_INFO = Gauge(
    "sluice_safety_policy_info",
    "1 for each policy pack version in force.",
    ["version"],
    registry=REGISTRY,
)
SAFETY_THINKING_DROPPED = Counter(
    "sluice_safety_thinking_blocks_dropped_total",
    "Thinking blocks of answers not delivered because a redact rule matched them (an edited thinking block "
    "would fail its signature on the next turn).",
    registry=REGISTRY,
)
STREAM_PINGS = Counter(
    "sluice_stream_pings_total",
    "ping events the gateway sent on its own while a stream was silent (upstream pings are relayed, not counted).",
    registry=REGISTRY,
)
REQUESTS_REFUSED = Counter(
    "sluice_requests_refused_total",
    "Requests the gateway refused before any model saw them, by API operation and reason (malformed bodies, "
    "field errors, unknown or retired models, limits, policy).",
    ["operation", "reason"],
    registry=REGISTRY,
)

# -- routing (issue 15): decisions, what the classifier sees, the cost controller --
ROUTE_DECISIONS = Counter(
    "sluice_route_decisions_total",
    "Routing decisions by policy (empty: a named model), capability tier chosen and reason "
    "(requested, mapped, task, signal, cost, ceiling, available).",
    ["policy", "tier", "reason"],
    registry=REGISTRY,
)
ROUTE_PREDICTED = Counter(
    "sluice_route_predicted_total",
    "Task and complexity the classifier predicted for policy-routed requests (its output distribution: drift).",
    ["task", "complexity"],
    registry=REGISTRY,
)
ROUTE_FEATURES = Counter(
    "sluice_route_features_total",
    "Policy-routed requests with each prompt feature present (tools, media, thinking, system, multi_turn).",
    ["feature"],
    registry=REGISTRY,
)
ROUTE_PROMPT_TOKENS = Histogram(
    "sluice_route_prompt_tokens",
    "Estimated input tokens of policy-routed requests (the classifier's input distribution: drift).",
    buckets=(30, 150, 600, 2_000, 8_000, 32_000, 128_000, 1_000_000),
    registry=REGISTRY,
)
ROUTE_CLASSIFIER_CONFIDENCE = Histogram(
    "sluice_route_classifier_confidence",
    "The classifier's probability of the task it predicted.",
    buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    registry=REGISTRY,
)
ROUTE_COST_SHIFT = Gauge(
    "sluice_route_cost_shift",
    "The cost controller's shift per scope, 0 (none) to 1 (every borderline request one tier down).",
    ["scope"],
    registry=REGISTRY,
)
ROUTE_COST_PER_REQUEST = Gauge(
    "sluice_route_cost_per_request_usd",
    "Rolling average estimated cost per policy-routed request per scope (about the last 500 requests), USD.",
    ["scope"],
    registry=REGISTRY,
)
ROUTE_COST_TARGET = Gauge(
    "sluice_route_cost_target_usd",
    "The cost controller's target per scope, USD per request.",
    ["scope"],
    registry=REGISTRY,
)
ROUTE_UNHEALTHY_SKIPPED = Counter(
    "sluice_route_unhealthy_skipped_total",
    "Candidates left off a route because the deployment's circuit breaker is open (shared through the fleet store).",
    ["deployment"],
    registry=REGISTRY,
)
FLEET_SYNC_FAILURES = Counter(
    "sluice_fleet_sync_failures_total",
    "Failed exchanges with the fleet store (latency history, breaker state, cost shift), by who.",
    ["service"],
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "sluice_cache_lookups_total",
    "Response cache lookups by result (hit, miss, bypass) and reason (absent, stale_input, mode_off, "
    "tenant_disabled, server_tools, store_unavailable, unreadable, single_flight).",
    ["result", "reason"],
    registry=REGISTRY,
)
CACHE_STORES = Counter(
    "sluice_cache_stores_total",
    "Answers offered to the response cache, by result (stored, skipped) and reason.",
    ["result", "reason"],
    registry=REGISTRY,
)
CACHE_ENTRY_BYTES = Histogram(
    "sluice_cache_entry_bytes",
    "Size of stored response cache entries after compression, bytes.",
    buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
    registry=REGISTRY,
)
CACHE_SAVED_USD = Counter(
    "sluice_cache_saved_usd_total",
    "What answered-from-cache requests would have cost upstream, USD: response hits and in-flight shares "
    "(kind=response), prompt cache reads below base input price (kind=prefix_read).",
    ["kind"],
    registry=REGISTRY,
)
CACHE_WRITE_PREMIUM_USD = Counter(
    "sluice_cache_write_premium_usd_total",
    "Prompt cache writes' premium over base input price, USD.",
    registry=REGISTRY,
)
CACHE_INVALIDATIONS = Counter(
    "sluice_cache_invalidations_total",
    "Response cache invalidations by scope (all, namespace, alias, prompt_version).",
    ["scope"],
    registry=REGISTRY,
)
CACHE_REFILTERED = Counter(
    "sluice_cache_refiltered_total",
    "Cached answers passed through the output filter again because the safety policy changed since stored.",
    registry=REGISTRY,
)
PREFIX_PREDICTIONS = Counter(
    "sluice_prefix_predictions_total",
    "Prompt cache forecasts settled against the upstream's usage, by kind (read, write) and outcome "
    "(exact, over, under).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
PREFIX_PREDICTION_ERROR = Histogram(
    "sluice_prefix_prediction_error_ratio",
    "|forecast - reported| / max(reported, 1) of prompt cache tokens, by kind (read, write).",
    ["kind"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
    registry=REGISTRY,
)
PREFIX_WARNINGS = Counter(
    "sluice_prefix_warnings_total",
    "Requests whose cache_control marks will not pay, by kind (short_prefix, volatile_prefix).",
    ["kind"],
    registry=REGISTRY,
)
PREFIX_AFFINITY = Counter(
    "sluice_prefix_affinity_total",
    "Routes whose first candidate was moved to the deployment where the request's prompt prefix is warm.",
    ["deployment"],
    registry=REGISTRY,
)
PREFIX_LEDGER_FAILURES = Counter(
    "sluice_prefix_ledger_failures_total",
    "Failed reads or writes of the prompt-prefix ledger (the request goes on without it), by who.",
    ["service"],
    registry=REGISTRY,
)

# -- what a request costs its client: the gateway's own view, in both modes ------------------------
# Labels are bounded: mode (all, mesh), route (messages, count_tokens), status (the HTTP status the
# Anthropic API would answer), error_type (its error type, "" when served), model (the catalog's ids),
# token_type (the OpenTelemetry GenAI convention's gen_ai.token.type values), tenant ("" unless
# telemetry.tenant_label is on: one series per tenant is the operator's choice).

_REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.9, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
                     0.25, 0.5, 1)

GATEWAY_REQUESTS = Counter(
    "sluice_gateway_requests_total",
    "Messages API requests the gateway answered (HTTP and gRPC clients), by mode, route, the HTTP status "
    "the Anthropic API would answer and its error type (\"\" when served).",
    ["mode", "route", "status", "error_type"],
    registry=REGISTRY,
)
GATEWAY_REQUEST_SECONDS = Histogram(
    "sluice_gateway_request_duration_seconds",
    "Time from the request's arrival to its last byte (OpenTelemetry GenAI gen_ai.server.request.duration), "
    "by mode, route and whether it streamed.",
    ["mode", "route", "stream"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
GATEWAY_OVERHEAD_SECONDS = Histogram(
    "sluice_gateway_overhead_seconds",
    "What Sluice adds to a request: its duration minus the time spent waiting on the upstream model "
    "(from sending each upstream request to its last event), by mode and route.",
    ["mode", "route"],
    buckets=_OVERHEAD_BUCKETS,
    registry=REGISTRY,
)
GATEWAY_TTFT_SECONDS = Histogram(
    "sluice_gateway_time_to_first_token_seconds",
    "Time from the request's arrival to the first content event the client receives (GenAI "
    "gen_ai.server.time_to_first_token), by mode and the model that answered.",
    ["mode", "model"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
GATEWAY_OUTPUT_TOKENS_PER_SECOND = Histogram(
    "sluice_gateway_output_tokens_per_second",
    "Output tokens per second of generation (after the first token) of served answers, by model.",
    ["model"],
    buckets=(5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 1000),
    registry=REGISTRY,
)
GATEWAY_TOKENS = Counter(
    "sluice_gateway_tokens_total",
    "Tokens of served answers, by model and token type (input, output, cache_read, cache_write; GenAI "
    "gen_ai.client.token.usage).",
    ["model", "token_type"],
    registry=REGISTRY,
)
GATEWAY_COST_USD = Counter(
    "sluice_gateway_cost_usd_total",
    "Estimated upstream cost of answered requests at the catalog's prices, USD, by model and tenant "
    "(\"\" unless telemetry.tenant_label).",
    ["model", "tenant"],
    registry=REGISTRY,
)
GATEWAY_REQUEST_COST_USD = Histogram(
    "sluice_gateway_request_cost_usd",
    "Estimated upstream cost per answered request, USD (cache hits cost 0), by model.",
    ["model"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.012, 0.015, 0.02, 0.05, 0.1, 0.25, 1, 5),
    registry=REGISTRY,
)
SPEND_BUDGET_USD = Gauge(
    "sluice_spend_budget_usd",
    "The region's configured spend budget, USD, by period (day): alert rules compare spend with it.",
    ["period"],
    registry=REGISTRY,
)
COST_PER_REQUEST_TARGET_USD = Gauge(
    "sluice_cost_per_request_target_usd",
    "The configured blended cost per request the region aims at, USD (design review: 0.012).",
    registry=REGISTRY,
)
TRACE_CONTEXT_REJECTED = Counter(
    "sluice_trace_context_rejected_total",
    "W3C trace headers from callers that were not well formed and were ignored, by header "
    "(traceparent, tracestate).",
    ["header"],
    registry=REGISTRY,
)
INFO = Gauge(
    "sluice_info",
    "1, labelled with the process's Sluice version, region, run mode and the services it hosts.",
    ["version", "region", "mode", "services"],
    registry=REGISTRY,
)
