"""Claude on Amazon Bedrock, as the simulator serves it: model ids, the
body's differences from the Messages API and Bedrock's error shape.

Paths (bedrock-runtime ``InvokeModel`` / ``InvokeModelWithResponseStream``,
botocore's service model; what ``anthropic.AnthropicBedrock`` 2.12.0 posts,
``lib/bedrock/_client.py``): ``POST /model/{modelId}/invoke`` (the message
JSON) and ``POST /model/{modelId}/invoke-with-response-stream`` (AWS
event-stream, `eventstream.py`). ``{modelId}`` is a catalog id, alias or
upstream name, optionally with a provider prefix (``anthropic.``, or an
inference profile's ``eu.anthropic.`` / ``us.anthropic.`` ...) and a
version suffix (``-v1:0``).

Body (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html):
``anthropic_version`` is required (Bedrock's ``bedrock-2023-05-31``, with
2023-06-01's rules; the simulator also takes ``2026-10-21``, which SDK 2.x
sends); ``anthropic_beta`` (a list of strings) stands for the
``anthropic-beta`` header; ``model`` and ``stream`` are refused (the path
says both). Refusals are Bedrock's JSON-schema wording, "Malformed input
request: #: extraneous key [stream] is not permitted, please reformat your
input and try again." (https://github.com/sigoden/aichat/issues/543) and
"required key [max_tokens] not found"
(https://github.com/diffbot/code-gpt-docs/issues/300); an unknown version's
wording is CHOSEN.

Errors: status, ``{"message": ...}`` and ``x-amzn-ErrorType:
<Name>:http://internal.amazon.com/coral/com.amazon.bedrock/`` (the names
and statuses of botocore's bedrock-runtime error shapes). The API's
refusals map by status (`error_name`). An unknown model is a 404
ResourceNotFoundException here (CHOSEN: real Bedrock answers 400
ValidationException "The provided model identifier is invalid.").
"""

from __future__ import annotations

import re
from typing import Any

from sluice.catalog.catalog import Catalog, ModelEntry
from sluice.simulator.rules import VERSION_2023, VERSION_2026, ApiError, invalid
from sluice.wire import jsontext

BEDROCK_VERSION = "bedrock-2023-05-31"
VERSIONS = {BEDROCK_VERSION: VERSION_2023, VERSION_2026: VERSION_2026}
ERROR_TYPE_URI = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
# API status -> (Bedrock status, exception name).
ERRORS = {
    400: (400, "ValidationException"), 401: (403, "AccessDeniedException"),
    402: (403, "AccessDeniedException"), 403: (403, "AccessDeniedException"),
    404: (404, "ResourceNotFoundException"), 408: (408, "ModelTimeoutException"),
    413: (400, "ValidationException"), 429: (429, "ThrottlingException"),
    500: (500, "InternalServerException"), 503: (503, "ServiceUnavailableException"),
    504: (408, "ModelTimeoutException"), 529: (503, "ServiceUnavailableException"),
}
_PREFIX = re.compile(r"(?:[a-z]{2,8}\.)?anthropic\.")
_VERSION_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")


def error_name(problem: ApiError) -> tuple[int, str]:
    """(status, exception name) of a refusal on the Bedrock wire. An
    ApiError already named as an AWS exception keeps its status and name;
    other 4xx are ValidationExceptions, other 5xx InternalServerExceptions."""
    if problem.error_type.endswith("Exception"):
        return problem.status, problem.error_type
    if problem.status in ERRORS:
        return ERRORS[problem.status]
    return (400, "ValidationException") if problem.status < 500 else (500, "InternalServerException")


def error_body(problem: ApiError) -> tuple[int, dict[str, str], dict[str, str]]:
    """(status, JSON body, headers) of a refusal on the Bedrock wire."""
    status, name = error_name(problem)
    return status, {"message": problem.message}, {"x-amzn-ErrorType": name + ERROR_TYPE_URI, **problem.headers}


def resolve_model(catalog: Catalog, model_id: str) -> ModelEntry | None:
    """The catalog model a Bedrock model id names, or None."""
    prefix = _PREFIX.match(model_id)
    name = _VERSION_SUFFIX.sub("", model_id[prefix.end():] if prefix else model_id)
    for candidate in (model_id, name):
        entry = catalog.lookup(candidate)
        if entry is not None:
            return entry
        for entry in catalog.models:
            if entry.upstream_name == candidate:
                return entry
    return None


def _malformed(detail: str) -> ApiError:
    return invalid(f"Malformed input request: {detail}, please reformat your input and try again.")


def to_api(doc: Any, model_id: str, streaming: bool, catalog: Catalog) -> tuple[str, Any]:
    """(API version, Messages API body) of a Bedrock body; ApiError for what
    Bedrock refuses. A body that is not an object is passed on for
    `rules.check_request` to refuse in its words."""
    if not isinstance(doc, dict):
        return VERSION_2023, doc
    for key in ("model", "stream"):
        if key in doc:
            raise _malformed(f"#: extraneous key [{key}] is not permitted")
    if "anthropic_version" not in doc:
        raise _malformed("#: required key [anthropic_version] not found")
    version = doc["anthropic_version"]
    if version not in VERSIONS:
        raise _malformed(f"#/anthropic_version: {jsontext.dumps(version)} is not a valid version")
    betas = doc.get("anthropic_beta")
    if betas is not None and not (isinstance(betas, list) and all(isinstance(b, str) for b in betas)):
        raise _malformed("#/anthropic_beta: expected a list of strings")
    entry = resolve_model(catalog, model_id)
    if entry is None:
        raise ApiError(404, f"Could not resolve the foundation model from the provided model identifier "
                            f"{model_id!r}.")
    body = {k: v for k, v in doc.items() if k not in ("anthropic_version", "anthropic_beta")}
    return VERSIONS[version], {"model": entry.id, **body, "stream": streaming}
