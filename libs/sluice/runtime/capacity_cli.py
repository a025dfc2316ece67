"""`sluice capacity`: traffic figures in, a sizing out (docs/capacity.md).

Every input is a flag whose default is the design review's figure or this
repository's measurement (libs/sluice/capacity/measured.yaml); the output
shows the arithmetic line by line and names the resource that saturates
first. `--json` prints the same as one JSON object. It needs no running
Sluice and reads no settings. A bad flag exits 2 with a message naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import TextIO

from sluice.capacity import model
from sluice.config import ConfigError

_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def _number(text: str) -> float:
    """A finite number, with an optional k/M/B/T suffix (45T = 45 x 10^12)."""
    raw = text.strip().replace("_", "").replace(",", "")
    scale = _SUFFIXES.get(raw[-1:].lower(), 1.0) if raw else 1.0
    try:
        value = float(raw[:-1] if scale != 1.0 else raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


def _slice_seconds(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be between 0 (no slicing) and 60 seconds "
                                         f"(auth.slice_seconds' bound), not {text!r}")
    return value


def _share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def _split(text: str) -> tuple[float, ...]:
    return tuple(_positive(part) for part in text.split(",") if part.strip())


def _mix(text: str) -> dict[str, float]:
    """model=share,model=share"""
    out = {}
    for part in text.split(","):
        name, eq, share = part.partition("=")
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(f"expected model=share[,model=share...], not {text!r}")
        out[name.strip()] = _share(share)
    return out


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Adds `sluice capacity` and its flags to the `sluice` parser's subcommands."""
    t, g = model.Traffic(), model.Targets()
    cap = sub.add_parser(
        "capacity", help="size gateways, Redis and Kafka per region, and price upstream tokens",
        description="Turns traffic figures into a sizing, showing the arithmetic. Defaults: the "
                    "design review's figures and this repository's measurements "
                    "(libs/sluice/capacity/measured.yaml). Numbers take k, M, B, T suffixes.")
    traffic = cap.add_argument_group("traffic (all regions)")
    traffic.add_argument("--peak-rps", type=_positive, default=t.peak_rps,
                         help="requests/s at peak (default 180k, the design review)")
    traffic.add_argument("--daily-users", type=_positive, default=t.daily_users,
                         help="daily users (default 25M)")
    traffic.add_argument("--stream-share", type=_share, default=t.stream_share,
                         help="share of requests that stream (default 0.70)")
    traffic.add_argument("--input-tokens-per-day", type=_positive, default=t.input_tokens_per_day,
                         help="prompt + context tokens per day (default 45T)")
    traffic.add_argument("--peak-to-average", type=_positive, default=t.peak_to_average,
                         help="peak requests/s over the day's average (default 2.0)")
    traffic.add_argument("--output-tokens", type=_positive, default=t.output_tokens_per_request,
                         help="mean output tokens per request (default 450: the routing policy's "
                              "per-task output, averaged)")
    traffic.add_argument("--exact-cache-hit-ratio", type=_share, default=t.exact_cache_hit_ratio,
                         help="share of requests the response cache answers (default 0.2)")
    traffic.add_argument("--prompt-cache-read-share", type=_share,
                         default=t.prompt_cache_read_share,
                         help="share of upstream input tokens read from the provider's prompt "
                              "cache (default 0.5)")
    traffic.add_argument("--prompt-cache-write-share", type=_share,
                         default=t.prompt_cache_write_share,
                         help="share of upstream input tokens written to it, 5-minute TTL "
                              "(default 0.05)")
    traffic.add_argument("--regions", type=_count, default=t.regions, help="regions (default 3)")
    traffic.add_argument("--region-split", type=_split, default=(),
                         help="share per region, e.g. 0.5,0.3,0.2 (default: even)")
    traffic.add_argument("--model-variants", type=_count, default=t.model_variants,
                         help="model variants served (default 12)")
    traffic.add_argument("--p99-ttft-ms", type=_positive, default=t.p99_ttft_ms,
                         help="p99 time to first token, ms (default 900)")
    traffic.add_argument("--output-tokens-per-second", type=_positive,
                         default=t.output_tokens_per_second,
                         help="upstream streaming speed (default 80)")
    traffic.add_argument("--hot-tenant-share", type=_share, default=t.hot_tenant_share,
                         help="the largest tenant's share of its region's traffic (default 0.05)")
    targets = cap.add_argument_group("capacity per unit and target utilisation")
    targets.add_argument("--mode", choices=model.MODES, default=g.mode,
                         help="Sluice's run mode (default all)")
    targets.add_argument("--gateway-utilisation", type=_share, default=g.gateway_utilisation,
                         help="target CPU utilisation of gateway cores (default 0.6)")
    targets.add_argument("--cores-per-pod", type=_positive, default=g.cores_per_pod,
                         help="cores per gateway pod (default 1: one process, one event loop)")
    targets.add_argument("--redis-ops-per-shard", type=_positive, default=g.redis_ops_per_shard,
                         help="client ops/s one Redis shard sustains, Lua-heavy (default 80k)")
    targets.add_argument("--redis-utilisation", type=_share, default=g.redis_utilisation,
                         help="target utilisation of a Redis shard (default 0.7)")
    targets.add_argument("--kafka-mb-per-partition", type=_positive,
                         default=g.kafka_mb_per_partition,
                         help="MB/s one partition takes (default 5)")
    targets.add_argument("--kafka-replication", type=_count, default=g.kafka_replication,
                         help="replication factor (default 3)")
    targets.add_argument("--sink-utilisation", type=_share, default=g.sink_utilisation,
                         help="target utilisation of a sink consumer (default 0.6)")
    targets.add_argument("--hot-tenant-rps", type=_non_negative, default=g.hot_tenant_rps,
                         help="auth.hot_tenant_rps: req/s of one tenant to one auth process (one "
                              "per gateway pod) from which it is served from slices (default "
                              "50, the setting's; 0: no slicing)")
    targets.add_argument("--slice-seconds", type=_slice_seconds, default=g.slice_seconds,
                         help="auth.slice_seconds: how long a slice lives, 0..60 (default 1; "
                              "0: no slicing)")
    measured = cap.add_argument_group("measured per-request costs (default: measured.yaml)")
    measured.add_argument("--measured", help="another measured-costs YAML file")
    measured.add_argument("--cpu-ms-json", type=_positive, help="gateway CPU ms, JSON request")
    measured.add_argument("--cpu-ms-sse", type=_positive, help="gateway CPU ms, SSE request")
    measured.add_argument("--cpu-ms-cache-hit", type=_positive,
                          help="gateway CPU ms, response-cache hit")
    measured.add_argument("--redis-ops", type=_positive,
                          help="Redis client ops per request with the cache off")
    measured.add_argument("--redis-cpu-us", type=_positive,
                          help="redis-server CPU us per request with the cache off")
    measured.add_argument("--event-bytes", type=_positive,
                          help="event bytes per request, all kinds (split as measured)")
    measured.add_argument("--sink-events-per-second", type=_positive,
                          help="events/s one sink consumer stores")
    measured.add_argument("--tier-mix", type=_mix,
                          help="model=share,... of upstream requests (default: the auto policy "
                               "replayed over the labelled trace)")
    measured.add_argument("--catalog", help="another model catalog YAML (prices)")
    cap.add_argument("--json", action="store_true", help="print the sizing as JSON")


def _measured(args: argparse.Namespace) -> model.Measured:
    base = model.load_measured(args.measured)
    cpu = {mode: dict(kinds) for mode, kinds in base.cpu_ms.items()}
    for flag, kind in (("cpu_ms_json", "json"), ("cpu_ms_sse", "sse"),
                       ("cpu_ms_cache_hit", "cache_hit")):
        if getattr(args, flag) is not None:
            cpu[args.mode][kind] = getattr(args, flag)
    changes: dict = {"cpu_ms": cpu}
    if args.redis_ops is not None:
        extra = base.client_ops["hit"] - base.client_ops["off"]
        changes["client_ops"] = {"off": args.redis_ops, "hit": args.redis_ops + extra}
    if args.redis_cpu_us is not None:
        extra = base.cpu_us["hit"] - base.cpu_us["off"]
        changes["cpu_us"] = {"off": args.redis_cpu_us, "hit": args.redis_cpu_us + extra}
    if args.event_bytes is not None:
        total = sum(base.event_bytes.values())
        changes["event_bytes"] = {k: v * args.event_bytes / total
                                  for k, v in base.event_bytes.items()}
    if args.sink_events_per_second is not None:
        changes["sink_events_per_second"] = args.sink_events_per_second
    return dataclasses.replace(base, **changes)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Runs `sluice capacity`; 0, or 2 with a message on err for inputs the model refuses."""
    try:
        measured = _measured(args)
        traffic = model.Traffic(
            peak_rps=args.peak_rps, daily_users=args.daily_users, stream_share=args.stream_share,
            input_tokens_per_day=args.input_tokens_per_day, peak_to_average=args.peak_to_average,
            output_tokens_per_request=args.output_tokens,
            exact_cache_hit_ratio=args.exact_cache_hit_ratio,
            prompt_cache_read_share=args.prompt_cache_read_share,
            prompt_cache_write_share=args.prompt_cache_write_share, regions=args.regions,
            region_split=args.region_split, model_variants=args.model_variants,
            p99_ttft_ms=args.p99_ttft_ms, output_tokens_per_second=args.output_tokens_per_second,
            hot_tenant_share=args.hot_tenant_share)
        targets = model.Targets(
            mode=args.mode, gateway_utilisation=args.gateway_utilisation,
            cores_per_pod=args.cores_per_pod, redis_ops_per_shard=args.redis_ops_per_shard,
            redis_utilisation=args.redis_utilisation,
            kafka_mb_per_partition=args.kafka_mb_per_partition,
            kafka_replication=args.kafka_replication, sink_utilisation=args.sink_utilisation,
            hot_tenant_rps=args.hot_tenant_rps, slice_seconds=args.slice_seconds)
        mix = args.tier_mix or measured.tier_mix
        prices = model.catalog_prices(sorted(mix), args.catalog)
        sizing = model.size(traffic, targets, measured, prices, mix)
    except (model.CapacityError, ConfigError) as exc:  # ConfigError: a bad --catalog
        err.write(f"sluice capacity: {exc}\n")
        return 2
    if args.json:
        out.write(json.dumps({"traffic": dataclasses.asdict(traffic),
                              "targets": dataclasses.asdict(targets),
                              "measured": dataclasses.asdict(measured),
                              "tier_mix": mix, **sizing.as_dict()}, indent=1) + "\n")
        return 0
    header = (f"Sluice capacity model ({targets.mode} mode; measured per-request costs of "
              f"{measured.date or 'unknown date'}, libs/sluice/capacity/measured.yaml)")
    out.write(model.render(sizing, header) + "\n")
    return 0
