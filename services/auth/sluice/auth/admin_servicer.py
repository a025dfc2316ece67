"""gRPC face of the admin API: keys and tenants, behind an admin credential."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from sluice.auth.key_admin import KeyAdmin
from sluice.auth.keystore import StoredKey
from sluice.auth.tenants import StoredTenant, TenantDirectory, TenantStore, validate_tenant
from sluice.auth.v1 import admin_service_pb2 as pb
from sluice.config import tenant_codec
from sluice.rpc import headers
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.response_cache import ResponseStore, StoreUnavailable, generation, namespace_for
from sluice.telemetry import metrics


class AdminCredentials:
    """Bearer tokens, kept as SHA-256 digests and compared in constant time."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    def check(self, metadata: Any) -> None:
        if not self._digests:
            raise SluiceError(Reason.INVALID_ADMIN_CREDENTIAL, "the admin API is disabled: set auth.admin_tokens")
        presented = ""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                presented = value.removeprefix("Bearer ")
        digest = hashlib.sha256(presented.encode()).digest()
        # Every token compared, so timing does not tell which one came close.
        if not presented or not sum(hmac.compare_digest(digest, d) for d in self._digests):
            raise SluiceError(Reason.INVALID_ADMIN_CREDENTIAL,
                              "admin calls need 'authorization: Bearer <admin token>'")


def _ts(ms: int) -> Timestamp | None:
    if not ms:
        return None
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def key_message(key: StoredKey) -> pb.ApiKey:
    return pb.ApiKey(key_id=key.key_id, tenant_id=key.tenant_id, description=key.description,
                     create_time=_ts(key.created_ms), revoke_time=_ts(key.revoked_ms),
                     expire_time=_ts(key.expires_ms), replaced_by=key.replaced_by)


def tenant_message(stored: StoredTenant) -> pb.Tenant:
    return tenant_codec.to_message(stored.tenant_id, stored.tenant, stored.revision)


class AdminServicer:
    def __init__(self, credentials: AdminCredentials, keys: KeyAdmin, tenants: TenantStore,
                 directory: TenantDirectory, tiers: set[str], responses: ResponseStore | None = None) -> None:
        self._credentials = credentials
        self._responses = responses
        self._keys = keys
        self._tenants = tenants
        self._directory = directory
        self._tiers = tiers

    def _admin(self, context: Any) -> None:
        self._credentials.check(context.invocation_metadata())

    async def CreateKey(self, request: pb.CreateKeyRequest, context: Any) -> pb.CreateKeyResponse:
        self._admin(context)
        await self._directory.refresh()  # a tenant created a moment ago, elsewhere
        key, api_key = await self._keys.create(request.tenant_id, request.description)
        return pb.CreateKeyResponse(key=key_message(key), api_key=api_key)

    async def ListKeys(self, request: pb.ListKeysRequest, context: Any) -> pb.ListKeysResponse:
        self._admin(context)
        return pb.ListKeysResponse(keys=[key_message(k) for k in await self._keys.list(request.tenant_id)])

    async def RevokeKey(self, request: pb.RevokeKeyRequest, context: Any) -> pb.RevokeKeyResponse:
        self._admin(context)
        return pb.RevokeKeyResponse(key=key_message(await self._keys.revoke(request.key_id)))

    async def RotateKey(self, request: pb.RotateKeyRequest, context: Any) -> pb.RotateKeyResponse:
        self._admin(context)
        new, api_key, previous = await self._keys.rotate(request.key_id, request.overlap_seconds)
        return pb.RotateKeyResponse(replacement=pb.CreateKeyResponse(key=key_message(new), api_key=api_key),
                                    previous=key_message(previous))

    async def GetTenant(self, request: pb.GetTenantRequest, context: Any) -> pb.GetTenantResponse:
        self._admin(context)
        stored = await self._tenants.get(request.tenant_id)
        if stored is None:
            raise SluiceError(Reason.NOT_FOUND, f"no tenant {request.tenant_id!r}")
        return pb.GetTenantResponse(tenant=tenant_message(stored))

    async def ListTenants(self, request: pb.ListTenantsRequest, context: Any) -> pb.ListTenantsResponse:
        self._admin(context)
        stored = await self._tenants.all()
        return pb.ListTenantsResponse(tenants=[tenant_message(stored[t]) for t in sorted(stored)])

    async def PutTenant(self, request: pb.PutTenantRequest, context: Any) -> pb.PutTenantResponse:
        self._admin(context)
        tenant_id = request.tenant.tenant_id
        tenant = validate_tenant(tenant_id, tenant_codec.fields_of(request.tenant), self._tiers)
        expected = request.expected_revision if request.HasField("expected_revision") else None
        stored = await self._tenants.put(tenant_id, tenant, expected_revision=expected)
        await self._directory.refresh()
        return pb.PutTenantResponse(tenant=tenant_message(stored))

    async def InvalidateCache(self, request: pb.InvalidateCacheRequest, context: Any
                              ) -> pb.InvalidateCacheResponse:
        """Bumps one response cache generation (sluice.storage.response_cache):
        all; a tenant's namespace (its shared one, when it names one: every
        tenant sharing it loses those entries too); an alias, for one tenant
        or every tenant; a prompt version of one tenant. Raises
        INVALID_REQUEST for a request that names nothing (or a prompt version
        without a tenant), NOT_FOUND for an unknown tenant,
        DEPENDENCY_UNAVAILABLE when the store does not answer."""
        self._admin(context)
        if request.prompt_version and not headers.PROMPT_VERSION_FORMAT.match(request.prompt_version):
            raise SluiceError.bad_request("prompt_version", "must be a prompt version tag as clients send it in "
                                          f"{headers.PROMPT_VERSION} (1 to 128 of A-Z a-z 0-9 ._:/+-)")
        if request.all:
            if request.tenant_id or request.alias or request.prompt_version:
                raise SluiceError.bad_request("all", "invalidates everything: name no tenant, alias or prompt "
                                              "version with it")
            what, scope, namespace = generation(), "all", ""
        elif request.tenant_id:
            stored = await self._tenants.get(request.tenant_id)
            if stored is None:
                raise SluiceError(Reason.NOT_FOUND, f"no tenant {request.tenant_id!r}")
            namespace = namespace_for(request.tenant_id, stored.tenant.cache.shared_namespace)
            if request.alias and request.prompt_version:
                raise SluiceError.bad_request("alias", "name an alias or a prompt_version, not both")
            what = generation(namespace, request.alias, request.prompt_version)
            scope = "alias" if request.alias else "prompt_version" if request.prompt_version else "namespace"
        elif request.alias:
            what, scope, namespace = generation(alias=request.alias), "alias", ""
        elif request.prompt_version:
            raise SluiceError.bad_request("tenant_id", "a prompt_version belongs to a tenant: name the tenant")
        else:
            raise SluiceError.bad_request("all", "name what to invalidate: all, a tenant_id, an alias, "
                                          "or a tenant_id with a prompt_version")
        if self._responses is None:
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE, "no response cache store is configured here")
        try:
            number = await self._responses.bump(what)
        except StoreUnavailable as exc:
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE, f"response cache store unavailable: {exc}") from None
        metrics.CACHE_INVALIDATIONS.labels(scope).inc()
        return pb.InvalidateCacheResponse(scope=scope, namespace=namespace, generation=number)
