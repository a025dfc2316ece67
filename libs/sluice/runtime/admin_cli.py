"""`sluice keys ...`, `sluice tenants ...` and `sluice cache invalidate`:
the admin API from a shell.

Calls go to the AdminService, which lives with the auth service: in `all`
mode that is the gateway's gRPC address (the default here), in a mesh the
auth service's. The admin token comes from --admin-token,
$SLUICE_ADMIN_TOKEN, or the first of auth.admin_tokens in the config file.
Output is JSON, one object per line, for scripts; a new key's full value
appears only in the create/rotate output.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

import grpc
from google.protobuf import json_format

from sluice.config import Settings
from sluice.config.tenants import TenantsFile


def add_commands(sub: argparse._SubParsersAction) -> None:
    # Connection flags on every verb, so they may come anywhere after it.
    common = argparse.ArgumentParser(add_help=False)
    _connection_flags(common)
    keys = sub.add_parser("keys", help="create, list, revoke and rotate API keys")
    verbs = keys.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", parents=[common], help="a new key for a tenant (its secret is shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--description", default="")
    listing = verbs.add_parser("list", parents=[common], help="a tenant's keys, without secrets")
    listing.add_argument("--tenant", required=True)
    revoke = verbs.add_parser("revoke", parents=[common], help="stop a key (within the auth decision cache TTL)")
    revoke.add_argument("key_id")
    rotate = verbs.add_parser("rotate", parents=[common], help="replace a key; the old one works for the overlap")
    rotate.add_argument("key_id")
    rotate.add_argument("--overlap-seconds", type=int, default=0,
                        help="how long the old key keeps working (default: auth.rotation_overlap_seconds)")

    tenants = sub.add_parser("tenants", help="list, show and change tenants at runtime")
    verbs = tenants.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", parents=[common], help="every tenant with its revision")
    get = verbs.add_parser("get", parents=[common], help="one tenant")
    get.add_argument("tenant_id")
    apply = verbs.add_parser("apply", parents=[common], help="create or replace the tenants of a tenants file")
    apply.add_argument("file")

    cache = sub.add_parser("cache", help="the response cache")
    verbs = cache.add_subparsers(dest="verb", required=True)
    inv = verbs.add_parser("invalidate", parents=[common],
                           help="make stored answers unreachable: --all, a --tenant's, an --alias's (of one tenant "
                                "or all), or a tenant's --prompt-version")
    inv.add_argument("--all", action="store_true", help="every stored answer")
    inv.add_argument("--tenant", default=None, type=_non_empty, help="the tenant (its namespace)")
    inv.add_argument("--alias", default=None, type=_non_empty,
                     help="requested model name, e.g. auto (with --tenant: that tenant's)")
    inv.add_argument("--prompt-version", default=None, type=_non_empty,
                     help="x-sluice-prompt-version tag (needs --tenant)")


def _non_empty(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=os.environ.get("SLUICE_ADMIN_TARGET"),
                        help="host:port of the admin API (default: $SLUICE_ADMIN_TARGET or the gateway's address)")
    parser.add_argument("--admin-token", default=os.environ.get("SLUICE_ADMIN_TOKEN"),
                        help="admin bearer token (default: $SLUICE_ADMIN_TOKEN or auth.admin_tokens[0])")


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from sluice.auth.v1 import admin_service_pb2 as pb
    from sluice.auth.v1 import admin_service_pb2_grpc
    from sluice.config import tenant_codec

    target = args.target or settings.services["gateway"].grpc
    token = args.admin_token or (settings.auth.admin_tokens[0].get_secret_value() if settings.auth.admin_tokens
                                 else "")
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(target) as channel:
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)

        def call(method: Any, request: Any) -> Any:
            return method(request, metadata=metadata, timeout=10)

        try:
            if args.command == "keys":
                replies = {
                    "create": lambda: [call(admin.CreateKey, pb.CreateKeyRequest(
                        tenant_id=args.tenant, description=args.description))],
                    "list": lambda: list(call(admin.ListKeys, pb.ListKeysRequest(tenant_id=args.tenant)).keys),
                    "revoke": lambda: [call(admin.RevokeKey, pb.RevokeKeyRequest(key_id=args.key_id)).key],
                    "rotate": lambda: [call(admin.RotateKey, pb.RotateKeyRequest(
                        key_id=args.key_id, overlap_seconds=args.overlap_seconds))],
                }[args.verb]()
            elif args.command == "cache":
                replies = [call(admin.InvalidateCache, pb.InvalidateCacheRequest(
                    all=args.all, tenant_id=args.tenant or "", alias=args.alias or "",
                    prompt_version=args.prompt_version or ""))]
            elif args.verb == "list":
                replies = list(call(admin.ListTenants, pb.ListTenantsRequest()).tenants)
            elif args.verb == "get":
                replies = [call(admin.GetTenant, pb.GetTenantRequest(tenant_id=args.tenant_id)).tenant]
            else:
                replies = [call(admin.PutTenant, pb.PutTenantRequest(tenant=tenant_codec.to_message(tenant_id, tenant)))
                           .tenant for tenant_id, tenant in TenantsFile.read(args.file).tenants.items()]
        except grpc.RpcError as exc:
            err.write(f"sluice: {exc.code().name}: {exc.details()}\n")
            return 1
        except ValueError as exc:
            err.write(f"sluice: {exc}\n")
            return 2
    out.writelines(json_format.MessageToJson(reply, preserving_proto_field_name=True, indent=None) + "\n" for reply in replies)
    return 0
