"""The capacity model (libs/sluice/capacity) and `sluice capacity`."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from sluice.capacity import model
from sluice.runtime import cli

PRICES = {"m": model.ModelPrice(input=1.0, output=2.0, cache_read=0.1, cache_write_5m=1.25)}


def small_measured(**changes: object) -> model.Measured:
    """Round per-request costs, one model."""
    base = model.Measured(
        cpu_ms={mode: {"json": 10.0, "sse": 10.0, "cache_hit": 10.0} for mode in model.MODES},
        client_ops={"off": 2.0, "hit": 3.0}, commands={"off": 40.0, "hit": 41.0},
        cpu_us={"off": 100.0, "hit": 100.0}, event_bytes={"billing": 500.0, "audit": 500.0},
        events_per_request=2.0, sink_events_per_second=1000.0, tier_mix={"m": 1.0})
    return dataclasses.replace(base, **changes)


SMALL = model.Traffic(peak_rps=1000, daily_users=1000, stream_share=0.5,
                      input_tokens_per_day=86_400_000, peak_to_average=2.0,
                      output_tokens_per_request=10, exact_cache_hit_ratio=0.0,
                      prompt_cache_read_share=0.0, prompt_cache_write_share=0.0, regions=1,
                      p99_ttft_ms=1000, output_tokens_per_second=10, hot_tenant_share=0.05)
SMALL_TARGETS = model.Targets(gateway_utilisation=0.5)


def test_small_input_by_hand() -> None:
    s = model.size(SMALL, SMALL_TARGETS, small_measured(), PRICES)
    # 1000 peak / 2 = 500 req/s average; x 86,400 s = 43.2M requests a day;
    # 86.4M tokens / 43.2M requests = 2 tokens a request.
    assert s.value("average requests/s") == 500
    assert s.value("requests/day") == 43_200_000
    assert s.value("input tokens/request") == pytest.approx(2.0)
    # 1 s TTFT + 10 tokens at 10/s = 2 s; 1000 req/s x 2 s = 2000 streams open.
    assert s.value("streams open at peak") == pytest.approx(2000)
    # 1000 req/s x 10 ms = 10 cores busy; / 0.5 = 20 cores = 20 pods of 1 core.
    assert s.value("gateway cores busy") == pytest.approx(10)
    region = s.regions[0]
    assert (region.gateway_cores, region.gateway_pods) == (pytest.approx(20), 20)
    # No hits: every request is a miss with the cache on: 2 + 2 (MGET, SET) = 4 ops.
    assert s.value("Redis client ops/request") == pytest.approx(4)
    assert region.redis_ops_per_s == pytest.approx(4000)
    assert region.redis_shards == 1
    # A shard sustains min(80,000 / 4, 10^6 / 100 us) = 10,000 req/s; the hot tenant's shard
    # carries all 1000 (one shard) -> 10%.
    assert s.value("hot tenant's shard") == pytest.approx(0.1)
    # 1000 req/s x 1000 B = 1 MB/s; per topic 1000 events/s / (1000 x 0.6) -> 2 partitions.
    assert region.kafka_mb_per_s == pytest.approx(1.0)
    assert region.kafka_partitions == 4 and region.sink_consumers == 4
    # 86.4M input tokens x $1/M + 43.2M x 10 output tokens x $2/M = 86.4 + 864.
    assert s.cost_per_day_usd == pytest.approx(950.4)
    assert s.cost_per_day_without_caches_usd == pytest.approx(950.4)


def test_hot_tenant_slicing_by_hand() -> None:
    # SMALL: 20 pods, 1000 req/s, the hot tenant 5% = 50 req/s -> 2.5 req/s per pod.
    # Not sliced at the default threshold (50): all 50 req/s reach its shard, and the output
    # names the threshold that would slice it (2.5 rounded down).
    s = model.size(SMALL, SMALL_TARGETS, small_measured(), PRICES)
    assert s.value("hot tenant per pod") == pytest.approx(2.5)
    assert s.value("hot tenant on its shard") == pytest.approx(50)
    per_pod = next(line for line in s.lines if line.name == "hot tenant per pod")
    assert "not sliced (set auth.hot_tenant_rps <= 2 to slice it)" in per_pod.formula
    # Sliced (2 <= 2.5): each of the 20 pods makes one refill + one give-back per 1 s slice,
    # one request-equivalent: min(50, 20 x 1 / 1 s) = 20. One shard: 950 + 20 = 970 of the
    # 10,000 req/s it sustains.
    sliced = dataclasses.replace(SMALL_TARGETS, hot_tenant_rps=2.0)
    s = model.size(SMALL, sliced, small_measured(), PRICES)
    assert s.value("hot tenant on its shard") == pytest.approx(20)
    assert s.value("hot tenant's shard") == pytest.approx(0.097)
    # 4 s slices: 20 pods x 1 / 4 s = 5.
    longer = dataclasses.replace(sliced, slice_seconds=4.0)
    assert model.size(SMALL, longer, small_measured(), PRICES).value(
        "hot tenant on its shard") == pytest.approx(5)
    # 0.01 s slices: 2,000 a second would exceed the 50 requests themselves: 50.
    short = dataclasses.replace(sliced, slice_seconds=0.01)
    assert model.size(SMALL, short, small_measured(), PRICES).value(
        "hot tenant on its shard") == pytest.approx(50)
    # 0 turns slicing off, whatever the rate.
    for off in (dataclasses.replace(sliced, hot_tenant_rps=0.0),
                dataclasses.replace(sliced, slice_seconds=0.0)):
        s = model.size(SMALL, off, small_measured(), PRICES)
        assert s.value("hot tenant on its shard") == pytest.approx(50)
        assert "slicing off" in next(
            line.formula for line in s.lines if line.name == "hot tenant per pod")


def test_slicing_moves_the_hot_shard_off_the_bottleneck() -> None:
    # Default traffic, sinks fast enough that the hot tenant's shard goes first: 3,000 req/s
    # over 499 pods is 6.01 req/s per pod, below the default 50, so it is not sliced.
    measured = dataclasses.replace(model.load_measured(), sink_events_per_second=20_000.0)
    prices = model.catalog_prices(sorted(measured.tier_mix))
    s = model.size(model.Traffic(), model.Targets(), measured, prices)
    assert s.value("hot tenant per pod") == pytest.approx(3000 / 499)
    assert s.value("hot tenant on its shard") == pytest.approx(3000)
    assert s.bottleneck.resource == "Redis, the hot tenant's shard"
    assert "auth.hot_tenant_rps <= 6" in model.render(s)
    # At 6 req/s (or less) it is sliced: 499 pods x 1 per second on its shard, below an even
    # shard's share, so what goes first is the shards as a whole, which more shards fix.
    s = model.size(model.Traffic(), model.Targets(hot_tenant_rps=6), measured, prices)
    assert s.value("hot tenant on its shard") == pytest.approx(499)
    assert s.bottleneck.resource == "Redis shards" and s.bottleneck.scales
    assert s.bottleneck.growth > 1  # 27 shards keep it at target: within capacity today
    # With the measured sinks the hot tenant's partition stays first: slicing is for quota.
    s = model.size(model.Traffic(), model.Targets(hot_tenant_rps=5), model.load_measured(),
                   prices)
    assert s.bottleneck.resource == "Kafka, the hot tenant's partition"
    assert s.value("hot tenant's shard") < 0.70


def test_caches_cut_the_upstream_bill() -> None:
    traffic = dataclasses.replace(SMALL, exact_cache_hit_ratio=0.5, prompt_cache_read_share=0.5)
    s = model.size(traffic, SMALL_TARGETS, small_measured(), PRICES)
    # Half the requests never go upstream; of the other half's 43.2M input tokens, half are
    # cache reads at $0.1/M: 21.6 + 2.16 + 21.6M requests x 10 tokens x $2/M = 432.
    assert s.cost_per_day_usd == pytest.approx(21.6 + 2.16 + 432)
    assert s.cost_per_day_without_caches_usd == pytest.approx(950.4)


def test_defaults_reproduce_the_design_review() -> None:
    s = model.size(model.Traffic(), model.Targets(), model.load_measured(),
                   model.catalog_prices(sorted(model.load_measured().tier_mix)))
    assert s.value("requests/day") == pytest.approx(90_000 * 86_400)  # 7.776B
    assert s.value("input tokens/request") == pytest.approx(45e12 / 7.776e9)  # 5,787
    assert s.value("requests/user/day") == pytest.approx(7.776e9 / 25e6)
    assert [r.peak_rps for r in s.regions] == [pytest.approx(60_000)] * 3
    assert s.value("upstream input tokens/day") == pytest.approx(45e12 * 0.8)
    assert s.value("upstream streams per model variant") == pytest.approx(
        s.value("streams open at peak") / 3 / 12)
    # 5% of a region is 3,000 req/s of one tenant: more than one sink stores (measured).
    assert s.bottleneck.resource == "Kafka, the hot tenant's partition"
    assert not s.bottleneck.scales


def test_the_bottleneck_follows_the_inputs() -> None:
    measured = model.load_measured()
    prices = model.catalog_prices(sorted(measured.tier_mix))

    def first(traffic: model.Traffic, targets: model.Targets | None = None,
              m: model.Measured = measured) -> str:
        return model.size(traffic, targets or model.Targets(), m, prices).bottleneck.resource

    # One tenant with 5% of a region: its events' partition (keyed by tenant) goes first...
    assert first(model.Traffic()) == "Kafka, the hot tenant's partition"
    # ... and with faster sinks, its quota keys' shard (one hash tag).
    fast_sinks = dataclasses.replace(measured, sink_events_per_second=20_000.0)
    assert first(model.Traffic(), m=fast_sinks) == "Redis, the hot tenant's shard"
    # No hot tenant and gateways run hot: gateway cores.
    assert first(model.Traffic(hot_tenant_share=0.001),
                 model.Targets(gateway_utilisation=0.9)) == "gateway cores"
    # Cheap Redis, a big tenant: its events on one partition outrun one sink.
    cheap = dataclasses.replace(measured, cpu_us={"off": 20.0, "hit": 20.0})
    assert first(model.Traffic(hot_tenant_share=0.1), m=cheap) == \
        "Kafka, the hot tenant's partition"
    # A small tenant, shards sized with little slack: the shards, which more shards fix.
    assert first(model.Traffic(hot_tenant_share=0.001), model.Targets(redis_utilisation=0.95),
                 cheap) == "Redis shards"


def test_uneven_split_sizes_each_region() -> None:
    traffic = dataclasses.replace(SMALL, regions=2, region_split=(0.75, 0.25))
    s = model.size(traffic, SMALL_TARGETS, small_measured(), PRICES)
    assert [r.gateway_pods for r in s.regions] == [15, 5]
    assert s.value("gateway pods, all regions") == 20


@pytest.mark.parametrize(("changes", "words"), [
    ({"stream_share": 1.5}, "stream_share"),
    ({"peak_to_average": 0.5}, "peak_to_average"),
    ({"region_split": (0.5, 0.5)}, "region_split"),
    ({"prompt_cache_read_share": 0.8, "prompt_cache_write_share": 0.3}, "exceed 1"),
])
def test_the_model_refuses_bad_inputs(changes: dict, words: str) -> None:
    with pytest.raises(model.CapacityError, match=words):
        model.size(dataclasses.replace(SMALL, **changes), SMALL_TARGETS, small_measured(), PRICES)


@pytest.mark.parametrize(("changes", "words"), [
    ({"hot_tenant_rps": -1.0}, "hot_tenant_rps must be"),
    ({"hot_tenant_rps": float("nan")}, "hot_tenant_rps must be"),
    ({"slice_seconds": -1.0}, "slice_seconds must be between 0"),
    ({"slice_seconds": 61.0}, "slice_seconds must be between 0"),
])
def test_the_model_refuses_bad_slicing(changes: dict, words: str) -> None:
    with pytest.raises(model.CapacityError, match=words):
        model.size(SMALL, dataclasses.replace(SMALL_TARGETS, **changes), small_measured(), PRICES)


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["capacity", *argv], out, err)
    return code, out.getvalue(), err.getvalue()


def test_command_prints_the_arithmetic_and_the_bottleneck() -> None:
    code, out, _ = _run()
    assert code == 0
    assert "input tokens/request" in out and "= 45T tokens/day / 7.78B requests/day" in out
    assert "saturates first: Kafka, the hot tenant's partition" in out
    assert "not sliced (set auth.hot_tenant_rps <= 6 to slice it)" in out


def test_command_slicing_flags() -> None:
    code, out, _ = _run("--json", "--hot-tenant-rps", "5", "--slice-seconds", "2")
    assert code == 0
    data = json.loads(out)
    assert data["targets"]["hot_tenant_rps"] == 5 and data["targets"]["slice_seconds"] == 2
    on_shard = next(line for line in data["lines"] if line["name"] == "hot tenant on its shard")
    assert on_shard["value"] == pytest.approx(499 / 2)  # 499 pods, a refill each 2 s
    code, out, _ = _run("--hot-tenant-rps", "0")
    assert code == 0 and "slicing off" in out


def test_command_json() -> None:
    code, out, _ = _run("--json", "--peak-rps", "90k", "--regions", "1")
    assert code == 0
    data = json.loads(out)
    assert data["traffic"]["peak_rps"] == 90_000
    assert data["regions"][0]["peak_rps"] == 90_000
    assert data["bottleneck"]["resource"]


@pytest.mark.parametrize(("argv", "words"), [
    (["--stream-share", "1.5"], "--stream-share: must be a share between 0 and 1"),
    (["--peak-rps", "-3"], "--peak-rps: must be positive"),
    (["--regions", "two"], "--regions: not a whole number"),
    (["--input-tokens-per-day", "lots"], "--input-tokens-per-day: not a number"),
    (["--tier-mix", "claude-haiku-4-5"], "--tier-mix: expected model=share"),
    (["--hot-tenant-rps", "-1"], "--hot-tenant-rps: must be 0 or more"),
    (["--hot-tenant-rps", "many"], "--hot-tenant-rps: not a number"),
    (["--slice-seconds", "-0.5"], "--slice-seconds: must be between 0 (no slicing) and 60"),
    (["--slice-seconds", "90"], "--slice-seconds: must be between 0 (no slicing) and 60"),
])
def test_command_refuses_bad_flags(argv: list[str], words: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _run(*argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "words"), [
    (["--region-split", "0.5,0.5"], "region_split has 2 shares for 3 regions"),
    (["--peak-to-average", "0.5"], "peak_to_average must be at least 1"),
    (["--tier-mix", "claude-nope=1"], "'claude-nope' is not in the catalog"),
    (["--tier-mix", "claude-haiku-4-5=0.5"], None),  # one model: normalised to all of it
])
def test_command_refuses_inputs_the_model_cannot_take(argv: list[str], words: str | None) -> None:
    code, _, err = _run(*argv)
    if words is None:
        assert code == 0
    else:
        assert code == 2 and err.startswith("sluice capacity: ") and words in err
