"""Tenants between their settings model and the admin API's messages.

Limits are overrides of the tier, so only the fields a tenant sets travel;
an unset field must stay unset, or a round trip would pin the tier's value.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from sluice.auth.v1 import admin_service_pb2 as pb
from sluice.config.tenants import Tenant


def to_message(tenant_id: str, tenant: Tenant, revision: int = 0) -> pb.Tenant:
    doc = tenant.model_dump(mode="json", exclude_none=True, exclude={"limits"})
    doc["limits"] = tenant.limits.model_dump(mode="json", exclude_unset=True)
    message = json_format.ParseDict(doc, pb.Tenant())
    message.tenant_id, message.revision = tenant_id, revision
    return message


def fields_of(message: pb.Tenant) -> dict[str, Any]:
    """The message's tenant fields, ready for `Tenant.model_validate`."""
    doc = json_format.MessageToDict(message, preserving_proto_field_name=True)
    doc.pop("tenant_id", None)
    doc.pop("revision", None)
    return doc
