"""The `sluice` command.

    sluice serve all                    every service in one process
    sluice serve all,simulator,sinks    ... plus the Anthropic simulator and, on the local
                                        event spool (no Kafka), the sink (make run)
    sluice serve auth                   one service of a mesh
    sluice check-config                 validate settings and exit
    sluice keys create --tenant acme    admin API: keys (create, list, revoke, rotate)
    sluice tenants list                 admin API: tenants (list, get, apply FILE)
    sluice cache invalidate --tenant T  admin API: response cache (--all, --alias A, --prompt-version V)
    sluice serve sinks --region eu      the region's billing/audit consumer (its Kafka, or the local spool)
    sluice audit verify                 check the audit hash chains in sink storage
    sluice billing report [--tenant T]  usage and cost per model per day; what caching saved per tenant
    sluice events spooled               events a gateway's spool holds, not yet taken by Kafka (or a local sink)
    sluice capacity [--peak-rps 180k]   size gateways, Redis and Kafka per region; price upstream tokens
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import signal
import sys
from types import ModuleType
from typing import Any, TextIO

from sluice.config import ConfigError, Settings, load
from sluice.runtime import admin_cli, capacity_cli
from sluice.runtime.modules import resolve_targets
from sluice.telemetry import logging as sluice_logging


def _banner(process) -> str:
    notes = process.runtime.announcements
    lines = ["", "Sluice is up: " + ", ".join(process.targets)]
    if process.grpc:
        lines.append(f"  gRPC            {process.grpc.address}")
    for site, _ in process._runners:  # reading our own process
        paths = " (/metrics, /healthz, /readyz)" if site.name == "admin" else ""
        lines.append(f"  HTTP {site.name:<10} http://{site.address}{paths}")
    tracing = process.settings.telemetry.tracing
    lines.append(f"  Tracing         {tracing.exporter} to {tracing.endpoint or 'the OTLP default'}, sampling "
                 f"{tracing.sampling_ratio:g} of new traces" if tracing.enabled else "  Tracing         off")
    if notes.get("events"):
        lines.append(f"  Events          {notes['events']}")
    if notes.get("sinks"):
        lines.append(f"  Sink            {notes['sinks']}")
    if notes.get("safety_policy"):
        lines.append(f"  Safety policy   {notes['safety_policy']}")
    key = notes.get("demo_api_key")
    if "gateway" in process.targets:
        base = f"http://{process.http_address('gateway')}"
        key_text = key or "<your sk-sluice-... key>"
        lines += [
            "",
            f"  Demo API key    {key_text}" if key else "",
            "",
            "  Anthropic SDK (pip install anthropic):",
            "    import anthropic",
            f"    client = anthropic.Anthropic(base_url=\"{base}\", api_key=\"{key_text}\")",
            "    msg = client.messages.create(model=\"claude-sonnet-4-6\", max_tokens=64,",
            "        messages=[{\"role\": \"user\", \"content\": \"Hello, Sluice\"}])",
            "    print(msg.content[0].text)",
            "",
            "  curl:",
            f"    curl -s {base}/v1/messages -H 'x-api-key: {key_text}' -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \\",
            "      -d '{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'",
            "",
            "  gRPC (grpcurl; reflection is on):",
            f"    grpcurl -plaintext -H 'x-api-key: {key_text}' -d '{{\"params\":{{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":64,"
            "\"messages\":[{\"role\":\"ROLE_USER\",\"content\":[{\"text\":{\"text\":\"Hello\"}}]}]}}' \\",
            f"      {process.grpc.address if process.grpc else ''} sluice.gateway.v1.GatewayService/StreamMessage",
        ]
    return "\n".join(lines) + "\n"


async def _first_request(process, out: TextIO) -> None:
    """Sends one request through the running gateway with the official SDK and shows it."""
    import anthropic

    key = process.runtime.announcements.get("demo_api_key")
    if "gateway" not in process.targets or not key:
        out.write("(no first request: it needs the gateway and auth.create_demo_key)\n")
        return
    client = anthropic.AsyncAnthropic(base_url=f"http://{process.http_address('gateway')}", api_key=key, max_retries=0)
    try:
        message = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=32, messages=[{"role": "user", "content": "Hello, Sluice"}]
        )
        # The same with "model": "auto": the router picks the model by task (x-sluice-route says why).
        routed = await client.messages.with_raw_response.create(
            model="auto", max_tokens=32, messages=[{"role": "user", "content": "What is the capital of France?"}])
        auto = await routed.parse()
        # Asked twice with the response cache on (x-sluice-cache: read-write): the second is a hit.
        ask = {"model": "claude-sonnet-4-6", "max_tokens": 32,
               "messages": [{"role": "user", "content": "What does a gateway cache?"}],
               "extra_headers": {"x-sluice-cache": "read-write"}}
        first = (await client.messages.with_raw_response.create(**ask)).headers  # type: ignore[call-overload]  # the SDK's overloads cannot take **kwargs
        again = (await client.messages.with_raw_response.create(**ask)).headers  # type: ignore[call-overload]  # the SDK's overloads cannot take **kwargs
        out.write(
            "First request (anthropic SDK -> gateway -> auth -> safety/cache/routing -> inference -> upstream):\n"
            f"  model={message.model} stop_reason={message.stop_reason} "
            f"input_tokens={message.usage.input_tokens} output_tokens={message.usage.output_tokens}\n"
            f"  text: {getattr(message.content[0], 'text', message.content[0].type)!r}\n"
            f"Routed by task (model=auto): model={auto.model}\n"
            f"  x-sluice-route: {routed.headers.get('x-sluice-route', '')}\n"
            f"Response cache (x-sluice-cache: read-write), asked twice: {first.get('x-sluice-cache')}, then "
            f"{again.get('x-sluice-cache')} (from request {again.get('x-sluice-cache-origin', '?')})\n"
            "\nPress Ctrl-C to stop.\n"
        )
    except anthropic.APIError as exc:
        out.write(f"First request failed: {exc}\n")
    finally:
        await client.close()
        out.flush()


async def _serve(settings: Settings, targets: list[str], out: TextIO, first_request: bool = False) -> None:
    from sluice.runtime.process import SluiceProcess

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    process = SluiceProcess(settings, targets)
    try:
        await process.start()
        out.write(_banner(process))
        out.flush()
        if first_request:
            await _first_request(process, out)
        await stop.wait()
        out.write("Sluice: draining...\n")
        out.flush()
    finally:
        await process.stop()


COMMAND_GROUP = "sluice.commands"


def command_modules() -> list[ModuleType]:
    """The services' command modules, as they register themselves: entry points of the group
    `sluice.commands` (pyproject.toml). Each has COMMANDS (the top-level commands it adds),
    add_commands(subparsers) and run(args, settings, out, err, provided) -> exit status; it may
    lend functions to the others as PROVIDES (name -> callable) and check settings as
    check_config(settings) -> a description (raising ConfigError or ValueError)."""
    return [entry.load() for entry in sorted(importlib.metadata.entry_points(group=COMMAND_GROUP),
                                             key=lambda e: e.name)]


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="sluice", description="Sluice LLM gateway mesh")
    parser.add_argument("--config", help="YAML settings file (default: $SLUICE_CONFIG or built-in defaults)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run services")
    serve.add_argument("targets", help="all, a service name, or a comma list")
    serve.add_argument("--first-request", action="store_true",
                       help="once up, send one request through the gateway and print it")
    serve.add_argument("--region", help="the region served (overrides the `region` setting)")
    modules = command_modules()
    owners: dict[str, ModuleType] = {}
    provided: dict[str, Any] = {}
    for module in modules:
        module.add_commands(sub)
        owners.update(dict.fromkeys(module.COMMANDS, module))
        provided.update(getattr(module, "PROVIDES", {}))
    sub.add_parser("check-config", help="validate settings and exit")
    admin_cli.add_commands(sub)
    capacity_cli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "capacity":  # arithmetic only: needs no settings
        return capacity_cli.run(args, out, err)

    try:
        settings = load(args.config, {"region": args.region} if getattr(args, "region", None) else None)
    except ConfigError as exc:
        err.write(f"sluice: {exc}\n")
        return 2
    if args.command == "check-config":
        loaded = []
        for module in modules:
            check = getattr(module, "check_config", None)
            if check is None:
                continue
            try:
                loaded.append(check(settings))
            except (ConfigError, ValueError) as exc:
                err.write(f"sluice: {exc}\n")
                return 2
        out.write(f"configuration ok ({'; '.join(loaded)})\n" if loaded else "configuration ok\n")
        return 0
    if args.command in ("keys", "tenants", "cache"):
        return admin_cli.run(args, settings, out, err)
    if args.command in owners:
        return owners[args.command].run(args, settings, out, err, provided)
    try:
        targets = resolve_targets(args.targets)
    except ValueError as exc:
        err.write(f"sluice: {exc}\n")
        return 2
    sluice_logging.setup(settings.server.log_level)
    try:
        import uvloop

        uvloop.run(_serve(settings, targets, out, args.first_request))
    except (ConfigError, OSError) as exc:
        err.write(f"sluice: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
