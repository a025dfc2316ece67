"""The capacity model: traffic figures and measured per-request costs in, a sizing out.

Pure arithmetic, no I/O except `load_measured` (a YAML file) and
`catalog_prices` (the model catalog): `size()` takes frozen dataclasses and
returns a `Sizing` whose `lines` show every step (name, value, unit, and the
arithmetic with the numbers filled in), so `sluice capacity` can print it and
docs/capacity.md can explain it line by line.

Where the defaults come from:

- Traffic (`Traffic`): the design review's figures: 180,000 requests/s at
  peak, 25M daily users, 70% streams, 45T prompt + context tokens a day,
  3 regions, 12 model variants, p99 time to first token 900 ms. The rest are
  this model's stated assumptions (peak-to-average 2.0, 450 output tokens,
  exact-cache hits 20%, ...), each a flag of `sluice capacity`.
- Per-request costs (`Measured`): this repository's measurements,
  `libs/sluice/capacity/measured.yaml` (date, machine and command beside
  each figure).
- Prices: the model catalog (`libs/sluice/catalog/catalog.yaml`), USD per
  million tokens; the tier mix: the router's default policy replayed over the
  project's labelled trace (measured.yaml `tier_mix`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SECONDS_PER_DAY = 86_400
MODES = ("all", "mesh")


class CapacityError(ValueError):
    """An input the model cannot take (a share outside [0, 1], a split that does not sum to 1,
    an unknown model, a measured-costs file missing a figure); the message names it."""


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """The load to size for, all regions together.

    Units: requests/s, users, tokens; shares are fractions in [0, 1]. Source: the design review
    for peak_rps, daily_users, stream_share, input_tokens_per_day, regions, model_variants and
    p99_ttft_ms; the others are this model's assumptions (docs/capacity.md says why each).
    """

    peak_rps: float = 180_000.0
    daily_users: float = 25_000_000.0
    stream_share: float = 0.70
    # Prompt + context tokens sent by clients per day, all regions (the review's 45T).
    input_tokens_per_day: float = 45e12
    # Peak requests/s over the day's average: turns the peak into requests per day.
    peak_to_average: float = 2.0
    # Mean output tokens per request: the default routing policy's per-task
    # `output_tokens` averaged over its 18 tasks (452, libs/sluice/catalog/policies.yaml).
    output_tokens_per_request: float = 450.0
    # Share of requests the exact response cache answers (no upstream call at all).
    exact_cache_hit_ratio: float = 0.20
    # Shares of the upstream's input tokens read from / written to the provider's prompt cache.
    prompt_cache_read_share: float = 0.50
    prompt_cache_write_share: float = 0.05
    regions: int = 3
    # Share of the traffic per region; empty = an even split.
    region_split: tuple[float, ...] = ()
    model_variants: int = 12
    p99_ttft_ms: float = 900.0
    # Streaming speed of the upstream, output tokens/s: with TTFT gives a request's duration.
    output_tokens_per_second: float = 80.0
    # The largest tenant's share of its region's traffic: its quota keys share one hash tag,
    # so one Redis shard, and its events share one Kafka partition per topic.
    hot_tenant_share: float = 0.05

    def split(self) -> tuple[float, ...]:
        """The share of traffic per region (even unless region_split says otherwise)."""
        return self.region_split or tuple(1.0 / self.regions for _ in range(self.regions))


@dataclass(frozen=True)
class Targets:
    """Capacity per unit and the utilisation each resource is sized to.

    Source: stated assumptions (flags of `sluice capacity`), explained in docs/capacity.md.
    """

    mode: str = "all"  # Sluice's run mode: "all" (one process) or "mesh"
    gateway_utilisation: float = 0.60  # target CPU utilisation of gateway cores
    cores_per_pod: float = 1.0  # one Sluice process is one event loop: about one core
    # What one Redis shard sustains for this Lua-heavy load, client commands/s (EVALSHA = 1).
    redis_ops_per_shard: float = 80_000.0
    redis_utilisation: float = 0.70  # target utilisation of a shard (ops and its one core)
    kafka_mb_per_partition: float = 5.0  # MB/s one partition takes, produced, sustained
    kafka_replication: int = 3  # copies a broker set writes of each byte
    sink_utilisation: float = 0.60  # target utilisation of one sink consumer
    # Hot-tenant slicing (services/auth/sluice/auth/slices.py; the auth settings of the same
    # names, their defaults): a tenant sending at least hot_tenant_rps req/s to one auth
    # process (one per gateway pod assumed) is served from slices of slice_seconds of that
    # process's traffic, leased and given back in one script call each. 0 turns slicing off.
    hot_tenant_rps: float = 50.0
    slice_seconds: float = 1.0


@dataclass(frozen=True)
class Measured:
    """Per-request costs measured on this repository (measured.yaml).

    cpu_ms: mode -> {"json", "sse", "cache_hit"} -> CPU milliseconds per request, summed over
    Sluice's processes. Redis figures per request, for a request with the response cache off
    ("off") and a response-cache hit ("hit"): client_ops (commands clients send, EVALSHA = 1),
    commands (INFO commandstats, commands run inside scripts included), cpu_us (redis-server CPU,
    microseconds). event_bytes: event kind -> bytes on Kafka per request (key + value + headers).
    sink_events_per_second: what one sink consumer stores. tier_mix: model id -> share of
    upstream requests. sources: figure group -> where it came from.
    """

    cpu_ms: Mapping[str, Mapping[str, float]]
    client_ops: Mapping[str, float]
    commands: Mapping[str, float]
    cpu_us: Mapping[str, float]
    event_bytes: Mapping[str, float]
    events_per_request: float
    sink_events_per_second: float
    tier_mix: Mapping[str, float]
    date: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens (the catalog's prices)."""

    input: float
    output: float
    cache_read: float
    cache_write_5m: float


# -- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One step: `value` in `unit`, and the arithmetic that gave it (numbers filled in)."""

    section: str
    name: str
    value: float
    unit: str
    formula: str


@dataclass(frozen=True)
class Headroom:
    """How far traffic can grow (x `growth`) before `resource` is at 100% of what it sustains.
    `scales`: False when adding units does not help (one hot tenant's shard or partition)."""

    resource: str
    growth: float
    scales: bool
    note: str
    remedy: str = ""  # what to do when it saturates first and more units do not help


@dataclass(frozen=True)
class RegionSizing:
    """What one region needs (counts are whole units)."""

    region: int
    share: float
    peak_rps: float
    gateway_cores: float
    gateway_pods: int
    redis_ops_per_s: float
    redis_shards: int
    kafka_mb_per_s: float
    kafka_partitions: int
    sink_consumers: int


@dataclass
class Sizing:
    """The model's answer: every line, per-region counts, headroom per resource, the bottleneck
    (the resource with the least headroom), and upstream cost per day in USD."""

    lines: list[Line]
    regions: list[RegionSizing]
    headroom: list[Headroom]
    bottleneck: Headroom
    cost_per_day_usd: float
    cost_per_day_without_caches_usd: float

    def value(self, name: str) -> float:
        """The value of the line called `name` (KeyError if none)."""
        for line in self.lines:
            if line.name == name:
                return line.value
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (`sluice capacity --json`)."""
        return {"lines": [asdict(line) for line in self.lines],
                "regions": [asdict(region) for region in self.regions],
                "headroom": [asdict(h) for h in self.headroom],
                "bottleneck": asdict(self.bottleneck),
                "cost_per_day_usd": self.cost_per_day_usd,
                "cost_per_day_without_caches_usd": self.cost_per_day_without_caches_usd}


# -- loading --------------------------------------------------------------------------------


def load_measured(path: str | Path | None = None) -> Measured:
    """The measured per-request costs: `path`, or the shipped measured.yaml.
    Raises CapacityError naming a missing or non-numeric figure."""
    if path is None:
        text = resources.files("sluice.capacity").joinpath("measured.yaml").read_text()
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise CapacityError(f"measured costs file: {exc}") from None
    raw = yaml.safe_load(text)
    try:
        measured = Measured(
            cpu_ms={mode: {k: float(v) for k, v in raw["cpu_ms_per_request"][mode].items()}
                    for mode in MODES},
            # YAML 1.1 reads a bare `off` as false: the file says cache_off and cache_hit.
            client_ops={k: float(raw["redis"]["client_ops_per_request"][f"cache_{k}"])
                        for k in ("off", "hit")},
            commands={k: float(raw["redis"]["commands_per_request"][f"cache_{k}"])
                      for k in ("off", "hit")},
            cpu_us={k: float(raw["redis"]["cpu_us_per_request"][f"cache_{k}"])
                    for k in ("off", "hit")},
            event_bytes={k: float(v) for k, v in raw["events"]["bytes_per_request"].items()},
            events_per_request=float(raw["events"]["records_per_request"]),
            sink_events_per_second=float(raw["events"]["sink_events_per_second"]),
            tier_mix={k: float(v) for k, v in raw["tier_mix"]["models"].items()},
            date=str(raw.get("date", "")),
            sources={k: str(v["command"]) for k, v in raw.items()
                     if isinstance(v, dict) and "command" in v},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CapacityError(f"measured costs file lacks or garbles {exc}") from None
    for mode in MODES:
        missing = {"json", "sse", "cache_hit"} - set(measured.cpu_ms[mode])
        if missing:
            raise CapacityError(f"measured costs file: cpu_ms_per_request.{mode} lacks "
                                f"{', '.join(sorted(missing))}")
    return measured


def catalog_prices(models: list[str], catalog_path: str | Path | None = None
                   ) -> dict[str, ModelPrice]:
    """The catalog's prices of `models` (USD per million tokens). CapacityError for a model the
    catalog does not list."""
    from sluice.catalog.catalog import load_catalog

    catalog = load_catalog(catalog_path)
    out = {}
    for name in models:
        entry = catalog.lookup(name)
        if entry is None:
            raise CapacityError(f"model {name!r} is not in the catalog")
        p = entry.prices
        out[name] = ModelPrice(p.input, p.output, p.cache_read, p.cache_write_5m)
    return out


# -- checks ---------------------------------------------------------------------------------


def _share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise CapacityError(f"{name} must be a share between 0 and 1, not {value:g}")


def _positive(name: str, value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise CapacityError(f"{name} must be a positive number, not {value:g}")


def validate(traffic: Traffic, targets: Targets, mix: Mapping[str, float]) -> None:
    """Raises CapacityError naming the first input the model cannot take."""
    for name in ("peak_rps", "daily_users", "input_tokens_per_day", "output_tokens_per_request",
                 "output_tokens_per_second", "p99_ttft_ms"):
        _positive(name, getattr(traffic, name))
    if traffic.peak_to_average < 1.0:
        raise CapacityError(f"peak_to_average must be at least 1 (the peak is never below the "
                            f"average), not {traffic.peak_to_average:g}")
    for name in ("stream_share", "exact_cache_hit_ratio", "prompt_cache_read_share",
                 "prompt_cache_write_share"):
        _share(name, getattr(traffic, name))
    _positive("hot_tenant_share", traffic.hot_tenant_share)
    _share("hot_tenant_share", traffic.hot_tenant_share)
    if traffic.prompt_cache_read_share + traffic.prompt_cache_write_share > 1.0:
        raise CapacityError("prompt_cache_read_share + prompt_cache_write_share exceed 1")
    if traffic.regions < 1 or traffic.model_variants < 1:
        raise CapacityError("regions and model_variants must be at least 1")
    if traffic.region_split:
        if len(traffic.region_split) != traffic.regions:
            raise CapacityError(f"region_split has {len(traffic.region_split)} shares for "
                                f"{traffic.regions} regions")
        for share in traffic.region_split:
            _positive("each region_split share", share)
        if abs(sum(traffic.region_split) - 1.0) > 0.01:
            raise CapacityError(f"region_split must sum to 1, not {sum(traffic.region_split):g}")
    if targets.mode not in MODES:
        raise CapacityError(f"mode must be one of {', '.join(MODES)}, not {targets.mode!r}")
    for name in ("gateway_utilisation", "redis_utilisation", "sink_utilisation"):
        value = getattr(targets, name)
        _positive(name, value)
        _share(name, value)
    for name in ("cores_per_pod", "redis_ops_per_shard", "kafka_mb_per_partition"):
        _positive(name, getattr(targets, name))
    if targets.kafka_replication < 1:
        raise CapacityError("kafka_replication must be at least 1")
    if not 0.0 <= targets.hot_tenant_rps < math.inf:
        raise CapacityError(f"hot_tenant_rps must be a number of requests/s, 0 or more (0: no "
                            f"slicing), not {targets.hot_tenant_rps:g}")
    if not 0.0 <= targets.slice_seconds <= 60.0:
        raise CapacityError(f"slice_seconds must be between 0 (no slicing) and 60 "
                            f"(auth.slice_seconds' bound), not {targets.slice_seconds:g}")
    if not mix:
        raise CapacityError("the tier mix names no model")
    for model, share in mix.items():
        _share(f"tier mix share of {model}", share)
    if abs(sum(mix.values()) - 1.0) > 0.01:
        raise CapacityError(f"the tier mix must sum to 1, not {sum(mix.values()):g}")


# -- formatting -----------------------------------------------------------------------------


def fmt(x: float, digits: int = 0) -> str:
    """A number for the arithmetic lines: thousands separated below 10 million, else three
    significant figures with a suffix (M, B, T: 10^6, 10^9, 10^12)."""
    if abs(x) >= 1e7:
        for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
            if abs(x) >= scale:
                return f"{x / scale:.3g}{suffix}"
    if digits == 0 and abs(x) < 100 and x != int(x):
        return f"{x:.3g}"
    return f"{x:,.{digits}f}"


def usd(x: float) -> str:
    """USD: four decimals below a dollar, cents below a thousand, whole dollars above."""
    if abs(x) < 1:
        return f"${x:.4f}"
    return f"${x:,.2f}" if abs(x) < 1000 else f"${x:,.0f}"


def _rounded_down(x: float) -> str:
    """`x` rounded down to a whole number, or below 1 to two significant figures: a setting
    at or below `x` (e.g. a threshold that `x` reaches)."""
    digits = 0 if x >= 1 or x <= 0 else 1 - math.floor(math.log10(x))
    return f"{math.floor(x * 10 ** digits) / 10 ** digits:.{digits}f}"


def _shown(value: float, unit: str) -> str:
    """A line's value as printed: USD, a percentage, or a number with as many decimals as
    its size deserves (none for whole counts and for values of 1,000 and more)."""
    if unit == "USD":
        return usd(value)
    if unit == "utilisation":
        return f"{value:.0%}"
    if value == int(value) or abs(value) >= 1000:
        digits = 0
    else:
        digits = 1 if abs(value) >= 100 else 2
    return f"{fmt(value, digits)} {unit}"


# -- the model ------------------------------------------------------------------------------


def size(traffic: Traffic, targets: Targets, measured: Measured,
         prices: Mapping[str, ModelPrice], mix: Mapping[str, float] | None = None) -> Sizing:
    """Sizes Sluice for `traffic` at `targets` with `measured` per-request costs; prices the
    upstream tokens at `prices` with the tier `mix` (model id -> share of upstream requests;
    default: measured.tier_mix). Raises CapacityError for inputs it cannot take."""
    mix = dict(mix if mix is not None else measured.tier_mix)
    total = sum(mix.values())
    mix = {model: share / total for model, share in mix.items()} if total else mix
    validate(traffic, targets, mix)
    missing = [model for model in mix if model not in prices]
    if missing:
        raise CapacityError(f"no price for {', '.join(missing)}")
    lines: list[Line] = []

    def line(section: str, name: str, value: float, unit: str, formula: str) -> float:
        lines.append(Line(section, name, value, unit, formula))
        return value

    t, g = traffic, targets
    hit, s = t.exact_cache_hit_ratio, t.stream_share
    # Traffic, all regions.
    sec = "traffic"
    avg = line(sec, "average requests/s", t.peak_rps / t.peak_to_average, "req/s",
               f"{fmt(t.peak_rps)} peak / {fmt(t.peak_to_average)} peak-to-average")
    per_day = line(sec, "requests/day", avg * SECONDS_PER_DAY, "req",
                   f"{fmt(avg)} x {SECONDS_PER_DAY:,} s")
    line(sec, "input tokens/request", t.input_tokens_per_day / per_day, "tokens",
         f"{fmt(t.input_tokens_per_day)} tokens/day / {fmt(per_day)} requests/day")
    line(sec, "requests/user/day", per_day / t.daily_users, "req",
         f"{fmt(per_day)} / {fmt(t.daily_users)} daily users")
    duration = line(sec, "request duration", t.p99_ttft_ms / 1000
                    + t.output_tokens_per_request / t.output_tokens_per_second, "s",
                    f"{fmt(t.p99_ttft_ms)} ms TTFT (p99, as an upper bound) + "
                    f"{fmt(t.output_tokens_per_request)} tokens / "
                    f"{fmt(t.output_tokens_per_second)} tokens/s")
    upstream_share = 1 - hit
    in_flight = line(sec, "streams open at peak", t.peak_rps * upstream_share * duration,
                     "streams", f"{fmt(t.peak_rps)} x (1 - {fmt(hit, 2)} exact-cache hits) x "
                     f"{duration:.2f} s (Little's law)")

    # Per-request costs, blended over the kinds of request.
    sec = "per request"
    cpu = measured.cpu_ms[g.mode]
    miss_cpu = s * cpu["sse"] + (1 - s) * cpu["json"]
    cpu_ms = line(sec, "gateway CPU/request", hit * cpu["cache_hit"] + (1 - hit) * miss_cpu,
                  "ms", f"{fmt(hit, 2)} x {cpu['cache_hit']:.2f} (hit) + {fmt(1 - hit, 2)} x "
                  f"({fmt(s, 2)} x {cpu['sse']:.2f} SSE + {fmt(1 - s, 2)} x {cpu['json']:.2f} "
                  f"JSON), {g.mode} mode")
    # A miss with the cache on does the cache-off request's work plus the lookup (MGET) and the
    # store (SET): libs/sluice/storage/response_cache.py. A SET costs Redis about what the MGET
    # did (the hit's extra over cache-off).
    lookup_us = max(measured.cpu_us["hit"] - measured.cpu_us["off"], 0.0)
    miss_ops = measured.client_ops["off"] + 2
    ops = line(sec, "Redis client ops/request", hit * measured.client_ops["hit"]
               + (1 - hit) * miss_ops, "ops",
               f"{fmt(hit, 2)} x {measured.client_ops['hit']:.2f} (hit) + {fmt(1 - hit, 2)} x "
               f"({measured.client_ops['off']:.2f} + 2 MGET/SET) (miss)")
    line(sec, "Redis commands/request (Lua included)", hit * measured.commands["hit"]
         + (1 - hit) * (measured.commands["off"] + 2), "commands",
         f"{fmt(hit, 2)} x {measured.commands['hit']:.1f} + {fmt(1 - hit, 2)} x "
         f"({measured.commands['off']:.1f} + 2)")
    redis_us = line(sec, "Redis CPU/request", hit * measured.cpu_us["hit"]
                    + (1 - hit) * (measured.cpu_us["off"] + 2 * lookup_us), "us",
                    f"{fmt(hit, 2)} x {measured.cpu_us['hit']:.0f} + {fmt(1 - hit, 2)} x "
                    f"({measured.cpu_us['off']:.0f} + 2 x {lookup_us:.0f})")
    event_bytes = sum(measured.event_bytes.values())
    line(sec, "event bytes/request", event_bytes, "B",
         " + ".join(f"{v:.0f} {k}" for k, v in sorted(measured.event_bytes.items()))
         + f" (key + value + headers, {measured.events_per_request:.2f} records)")

    # Per region: the largest region's arithmetic is shown; every region is sized.
    split = t.split()
    largest = max(range(len(split)), key=lambda i: split[i])
    regions: list[RegionSizing] = []
    headroom: list[Headroom] = []
    for i, share in enumerate(split):
        shown = i == largest
        sink: list[Line] = []  # lines of the regions not shown

        def rline(sec: str, name: str, value: float, unit: str, formula: str,
                  _shown: bool = shown, _sink: list[Line] = sink) -> float:
            if _shown:
                return line(sec, name, value, unit, formula)
            _sink.append(Line(sec, name, value, unit, formula))
            return value

        sec = f"region {i + 1} of {len(split)}" + (" (largest)" if len(split) > 1 else "")
        rps = rline(sec, "peak requests/s", t.peak_rps * share, "req/s",
                    f"{fmt(t.peak_rps)} x {share:.3f}")
        busy = rline(sec, "gateway cores busy", rps * cpu_ms / 1000, "cores",
                     f"{fmt(rps)} x {cpu_ms:.2f} ms / 1000")
        cores = rline(sec, "gateway cores", busy / g.gateway_utilisation, "cores",
                      f"{fmt(busy, 1)} / {fmt(g.gateway_utilisation, 2)} target utilisation")
        pods = math.ceil(cores / g.cores_per_pod - 1e-9)
        rline(sec, "gateway pods", pods, "pods",
              f"ceil({fmt(cores, 1)} / {fmt(g.cores_per_pod)} cores per pod)")
        rline(sec, "streams open per pod", in_flight * share / pods, "streams",
              f"{fmt(in_flight * share)} / {pods} pods")
        rline(sec, "upstream streams per model variant", in_flight * share / t.model_variants,
              "streams", f"{fmt(in_flight * share)} / {t.model_variants} variants (even)")
        ops_s = rline(sec, "Redis client ops/s", rps * ops, "ops/s", f"{fmt(rps)} x {ops:.2f}")
        redis_cores = rline(sec, "Redis cores busy", rps * redis_us / 1e6, "cores",
                            f"{fmt(rps)} x {redis_us:.0f} us / 10^6")
        by_ops = math.ceil(ops_s / (g.redis_ops_per_shard * g.redis_utilisation) - 1e-9)
        by_cpu = math.ceil(redis_cores / g.redis_utilisation - 1e-9)
        hot_rps = rps * t.hot_tenant_share
        # Hot-tenant slicing decides per auth process (one per gateway pod: `all` mode runs
        # one in each; mesh is assumed to run as many): at hot_tenant_rps or more to one
        # process, the tenant is served from slices. A pod then makes one refill (ADMIT) and
        # one give-back (SETTLE) per slice: 2 script calls, about one request's ADMIT + SETTLE,
        # so its shard sees one request-equivalent per slice per pod instead of each request.
        # Assumed: the slice cap (auth.slice_max_share of each limit) does not bind; if it did,
        # refills would come more often.
        slicing = g.hot_tenant_rps > 0 and g.slice_seconds > 0
        hot_per_pod = hot_rps / pods
        sliced = slicing and hot_per_pod >= g.hot_tenant_rps
        per_pod_why = (f"{fmt(hot_rps)} req/s of one tenant ({fmt(rps)} x "
                       f"{t.hot_tenant_share:g}) / {pods} pods, one auth process each"
                       + ("" if g.mode == "all" else " (assumed in mesh mode)") + "; ")
        if not slicing:
            per_pod_why += "slicing off (hot_tenant_rps or slice_seconds 0)"
        elif sliced:
            per_pod_why += f">= auth.hot_tenant_rps {fmt(g.hot_tenant_rps)}: sliced"
        else:
            per_pod_why += (f"below auth.hot_tenant_rps {fmt(g.hot_tenant_rps)}: not sliced "
                            f"(set auth.hot_tenant_rps <= {_rounded_down(hot_per_pod)} to "
                            "slice it)")
        rline(sec, "hot tenant per pod", hot_per_pod, "req/s", per_pod_why)
        hot_eq = min(hot_rps, pods / g.slice_seconds) if sliced else hot_rps
        rline(sec, "hot tenant on its shard", hot_eq, "req-eq/s",
              f"min({fmt(hot_rps)} req/s, {pods} pods x 1 per {fmt(g.slice_seconds)} s slice): "
              "sliced, a pod's refill + give-back (2 script calls) ~ one request's ADMIT + "
              "SETTLE per slice (assumed: the slice cap, auth.slice_max_share of each limit, "
              "does not bind)" if sliced else
              f"all of its {fmt(hot_rps)} req/s: not sliced, ADMIT + SETTLE per request")
        # The hot tenant's shard: its share of the rest, plus the hot tenant's load (hot_eq).
        # Enough shards that it stays at the target:
        # (R - h) / n + e <= C u  ->  n >= (R - h) / (C u - e).
        per_shard_rps = min(g.redis_ops_per_shard / ops, 1e6 / redis_us)  # at 100%
        room = per_shard_rps * g.redis_utilisation - hot_eq
        by_hot = math.ceil((rps - hot_rps) / room - 1e-9) if room > 0 else 0
        shards = max(by_ops, by_cpu, by_hot, 1)
        rline(sec, "Redis shards", shards, "shards",
              f"max(ceil({fmt(ops_s)} / ({fmt(g.redis_ops_per_shard)} x "
              f"{fmt(g.redis_utilisation, 2)})) = {by_ops} by ops, ceil({fmt(redis_cores, 2)} / "
              f"{fmt(g.redis_utilisation, 2)}) = {by_cpu} by CPU, "
              + (f"{by_hot} to keep the hot tenant's shard at target)" if by_hot else
                 f"the hot tenant's {fmt(hot_eq)} req/s alone exceed a shard's target)"))
        hot_load = (rps - hot_rps) / shards + hot_eq
        rline(sec, "hot tenant's shard", hot_load / per_shard_rps, "utilisation",
              f"(({fmt(rps)} - {fmt(hot_rps)} hot) / {shards} + {fmt(hot_eq)}"
              f"{' sliced' if sliced else ''}) req/s / "
              f"{fmt(per_shard_rps)} req/s a shard sustains = min({fmt(g.redis_ops_per_shard)} / "
              f"{ops:.2f}, 10^6 / {redis_us:.0f})")
        mb = rline(sec, "Kafka MB/s", rps * event_bytes / 1e6, "MB/s",
                   f"{fmt(rps)} x {event_bytes:.0f} B / 10^6")
        rline(sec, "Kafka broker writes", mb * g.kafka_replication, "MB/s",
              f"{mb:.1f} x {g.kafka_replication} replicas")
        # Events are keyed by tenant: the hot tenant's events of a topic share one partition,
        # so one sink consumer. Sized like the shards: (E - h) / n + h <= S u per topic.
        topics = max(len(measured.event_bytes), 1)
        events_per_topic = rps * measured.events_per_request / topics
        hot_events = hot_rps * measured.events_per_request / topics
        sink_room = measured.sink_events_per_second * g.sink_utilisation - hot_events
        by_sink = (math.ceil((events_per_topic - hot_events) / sink_room - 1e-9)
                   if sink_room > 0 else math.ceil(events_per_topic / (
                       measured.sink_events_per_second * g.sink_utilisation) - 1e-9))
        per_topic: dict[str, int] = {}
        formulas = []
        for kind, size_b in sorted(measured.event_bytes.items()):
            by_bytes = math.ceil(rps * size_b / 1e6 / g.kafka_mb_per_partition - 1e-9)
            per_topic[kind] = max(by_bytes, by_sink, 1)
            formulas.append(f"{kind} max({by_bytes} by MB/s, {by_sink} by sink)")
        partitions_total = sum(per_topic.values())
        sink_why = (f"sink: ({fmt(events_per_topic)} - {fmt(hot_events)} hot) events/s per topic "
                    f"/ ({fmt(measured.sink_events_per_second)} x {fmt(g.sink_utilisation, 2)} - "
                    f"{fmt(hot_events)})" if sink_room > 0 else
                    f"sink: {fmt(events_per_topic)} events/s per topic / "
                    f"({fmt(measured.sink_events_per_second)} x {fmt(g.sink_utilisation, 2)}); "
                    f"the hot tenant's {fmt(hot_events)} alone exceed one sink's target")
        rline(sec, "Kafka partitions", partitions_total, "partitions",
              "; ".join(formulas) + f" ({sink_why})")
        rline(sec, "sink consumers", partitions_total, "consumers", "one per partition")
        least = min(per_topic.values())
        hot_partition = (events_per_topic - hot_events) / least + hot_events
        rline(sec, "hot tenant's partition", hot_partition / measured.sink_events_per_second,
              "utilisation", f"(({fmt(events_per_topic)} - {fmt(hot_events)} hot) / {least} + "
              f"{fmt(hot_events)}) events/s / {fmt(measured.sink_events_per_second)} one sink "
              "stores")
        regions.append(RegionSizing(i + 1, share, rps, cores, pods, ops_s, shards, mb,
                                    partitions_total, partitions_total))
        if shown:
            # The busiest shard and partition carry the hot tenant. When it is bigger than an
            # even share of one, more units leave it where it is: it does not scale.
            even_shard = (rps - hot_rps) / shards
            even_partition = (events_per_topic - hot_events) / least
            hot_mb = hot_rps * max(measured.event_bytes.values(), default=0.0) / 1e6
            headroom += [
                Headroom("gateway cores", pods * g.cores_per_pod / busy, True,
                         f"{pods} pods x {fmt(g.cores_per_pod)} cores / {fmt(busy, 1)} busy"),
                Headroom("Redis, the hot tenant's shard" if hot_eq > even_shard else
                         "Redis shards", per_shard_rps / hot_load, hot_eq <= even_shard,
                         f"{fmt(per_shard_rps)} req/s a shard sustains / {fmt(hot_load)} on the "
                         f"busiest, {fmt(hot_eq)} of them one tenant's (one hash tag"
                         + (", sliced)" if sliced else ", not sliced)"),
                         "adding shards does not move it: " + (
                             f"longer slices (auth.slice_seconds, now {fmt(g.slice_seconds)} s) "
                             "mean fewer refills, or cap the tenant's share" if sliced else
                             f"set auth.hot_tenant_rps <= {_rounded_down(hot_per_pod)} so the "
                             f"tenant's {fmt(hot_per_pod)} req/s per pod are sliced"
                             if slicing else "turn hot-tenant slicing on (auth.hot_tenant_rps)")),
                Headroom("Kafka, the hot tenant's partition" if hot_events > even_partition else
                         "Kafka partitions and sinks",
                         min(measured.sink_events_per_second / hot_partition,
                             g.kafka_mb_per_partition / hot_mb if hot_mb else math.inf),
                         hot_events <= even_partition,
                         f"{fmt(measured.sink_events_per_second)} events/s one sink stores / "
                         f"{fmt(hot_partition)} on the busiest partition, {fmt(hot_events)} of "
                         "them one tenant's (keyed by tenant)",
                         "adding partitions does not move it: split the tenant's events over "
                         "more keys, or cap its share"),
            ]
    sec = "all regions"
    line(sec, "gateway pods, all regions", sum(r.gateway_pods for r in regions), "pods",
         " + ".join(str(r.gateway_pods) for r in regions))
    line(sec, "gateway cores, all regions", sum(r.gateway_pods for r in regions)
         * g.cores_per_pod, "cores", f"pods x {fmt(g.cores_per_pod)}")
    line(sec, "Redis shards, all regions", sum(r.redis_shards for r in regions), "shards",
         " + ".join(str(r.redis_shards) for r in regions))
    line(sec, "Kafka partitions = sinks, all regions", sum(r.kafka_partitions for r in regions),
         "partitions", " + ".join(str(r.kafka_partitions) for r in regions))

    # Upstream tokens and their cost per day, all regions.
    sec = "upstream cost per day"
    upstream_req = line(sec, "upstream requests/day", per_day * (1 - hit), "req",
                        f"{fmt(per_day)} x (1 - {fmt(hit, 2)} exact-cache hits, which cost "
                        "nothing upstream)")
    up_in = line(sec, "upstream input tokens/day", t.input_tokens_per_day * (1 - hit), "tokens",
                 f"{fmt(t.input_tokens_per_day)} x {fmt(1 - hit, 2)}")
    r, w = t.prompt_cache_read_share, t.prompt_cache_write_share
    out_tokens = line(sec, "upstream output tokens/day", upstream_req
                      * t.output_tokens_per_request, "tokens",
                      f"{fmt(upstream_req)} x {fmt(t.output_tokens_per_request)}")
    cost = 0.0
    bare = 0.0
    for model, share in sorted(mix.items(), key=lambda kv: -kv[1]):
        p = prices[model]
        part = share * (up_in * ((1 - r - w) * p.input + r * p.cache_read + w * p.cache_write_5m)
                        + out_tokens * p.output) / 1e6
        cost += line(sec, f"cost {model}", part, "USD",
                     f"{share:.3f} x ({fmt(up_in)} x ({fmt(1 - r - w, 2)} x {p.input:g} + "
                     f"{fmt(r, 2)} read x {p.cache_read:g} + {fmt(w, 2)} write x "
                     f"{p.cache_write_5m:g}) + {fmt(out_tokens)} x {p.output:g}) / 10^6")
        bare += share * (t.input_tokens_per_day * p.input
                         + per_day * t.output_tokens_per_request * p.output) / 1e6
    line(sec, "upstream cost/day", cost, "USD", " + ".join(
        usd(entry.value) for entry in lines if entry.name.startswith("cost ")))
    line(sec, "without any cache", bare, "USD",
         f"every request upstream, every input token at the input price; caches save "
         f"{usd(bare - cost)} ({(bare - cost) / bare:.0%})")
    line(sec, "cost/upstream request", cost / upstream_req, "USD",
         f"{usd(cost)} / {fmt(upstream_req)} (routing.cost_target_usd is $0.012)")

    bottleneck = min(headroom, key=lambda h: h.growth)
    return Sizing(lines, regions, headroom, bottleneck, cost, bare)


def render(sizing: Sizing, header: str = "") -> str:
    """The sizing as text: one line per step, the headroom table, then the bottleneck named."""
    out = [header] if header else []
    section = None
    for entry in sizing.lines:
        if entry.section != section:
            section = entry.section
            out.append(f"{section}:")
        out.append(f"  {entry.name:<38} {_shown(entry.value, entry.unit):>16}  = {entry.formula}")
    out.append("headroom (traffic growth until each resource is at 100%, largest region):")
    for h in sorted(sizing.headroom, key=lambda h: h.growth):
        fixed = "" if h.scales else " (more units do not help)"
        out.append(f"  {h.resource:<38} {h.growth:>15.2f}x  = {h.note}{fixed}")
    b = sizing.bottleneck
    remedy = ("add units (pods, shards, partitions) as traffic grows" if b.scales else
              b.remedy or "adding shards or partitions does not move it: split the tenant's "
              "counters or events over more keys, or cap its share")
    when = (f"already over capacity at today's peak (it sustains {b.growth:.2f}x of it)"
            if b.growth < 1 else f"at {b.growth:.2f}x today's peak")
    out.append(f"saturates first: {b.resource}, {when}; {remedy}")
    return "\n".join(out)
