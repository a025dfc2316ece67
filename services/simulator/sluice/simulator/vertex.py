"""Claude on Google Vertex AI, as the simulator serves it: the paths, the
body's differences from the Messages API, bearer tokens and the OAuth2
token endpoint google-auth refreshes credentials at.

Paths (what ``anthropic.AnthropicVertex`` 2.12.0 posts, ``lib/vertex/_client.py``,
relative to its base URL ``https://{region}-aiplatform.googleapis.com/v1``):
``projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict``
(a JSON answer, or SSE when the body says ``"stream": true``),
``...:streamRawPredict`` (always SSE) and
``.../models/count-tokens:rawPredict`` (``{"input_tokens": N}``; the body
names the model). ``{model}`` is a catalog id, optionally with an
``@<date>`` version (``claude-sonnet-4-5@20250929``).

Body (https://platform.claude.com/docs/en/build-with-claude/claude-on-vertex-ai):
``anthropic_version`` is required (Vertex's own ``vertex-2023-10-16``, which
has 2023-06-01's rules; the simulator also takes the API versions
``2023-06-01`` and ``2026-10-21``, which SDK 2.x sends); a ``model`` field
is refused (``model: Extra inputs are not permitted``), the model is the
path's. CHOSEN wordings: an unknown version ``anthropic_version: "<v>" is
not a valid version`` (the API header rule's wording); an unknown model
Vertex's ``Publisher Model `projects/.../models/<m>` not found.``.

Auth: ``Authorization: Bearer <token>``, where the token is one the
simulator's ``POST /oauth2/token`` issued or any token starting with
``sim-vertex-`` (issued tokens do; a test that skips OAuth passes its own).
Otherwise 401 authentication_error with Google's wording.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.catalog.catalog import Catalog
from sluice.simulator.rules import VERSION_2023, VERSION_2026, ApiError, invalid
from sluice.wire import jsontext

VERTEX_VERSION = "vertex-2023-10-16"
# Body anthropic_version -> the API version whose rules apply.
VERSIONS = {VERTEX_VERSION: VERSION_2023, VERSION_2023: VERSION_2023, VERSION_2026: VERSION_2026}
TOKEN_PREFIX = "sim-vertex-"
TOKEN_SECONDS = 3600
COUNT_TOKENS = "count-tokens"
_PATH = re.compile(r"(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/(?P<publisher>[^/]+)"
                   r"/models/(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)")
_UNAUTHENTICATED = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                    "cookie or other valid authentication credential.")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class VertexPath:
    project: str
    location: str
    model: str  # as in the path: "count-tokens", or a model id with an optional @version
    method: str  # "rawPredict" | "streamRawPredict"

    @property
    def count_tokens(self) -> bool:
        return self.model == COUNT_TOKENS

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/publishers/anthropic/models/{self.model}"


def parse_path(tail: str) -> VertexPath:
    """The path after ``/v1/projects/``; ApiError 404 for any other shape
    (another publisher, another method, count-tokens streamed)."""
    found = _PATH.fullmatch(tail)
    if found is None or found["publisher"] != "anthropic" or (
            found["model"] == COUNT_TOKENS and found["method"] != "rawPredict"):
        raise ApiError(404, f"The requested URL /v1/projects/{tail} was not found on this server.")
    return VertexPath(found["project"], found["location"], found["model"], found["method"])


def location_of(tail: str) -> str:
    """The location a path names ("" when it names none), for the record."""
    found = re.match(r"[^/]+/locations/([^/]+)", tail)
    return found[1] if found else ""


def check_token(authorization: str | None) -> None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip().startswith(TOKEN_PREFIX):
        raise ApiError(401, _UNAUTHENTICATED)


def check_location(path: VertexPath, region: str, deployment: str) -> None:
    """A deployment with a region serves only that location (404 otherwise)."""
    if region and path.location != region:
        raise ApiError(404, f"location {path.location!r} is not served here: deployment {deployment!r} "
                            f"is in {region!r}")


def model_name(catalog: Catalog, model: str) -> str | None:
    """The catalog id a Vertex model id (``<id>`` or ``<id>@<version>``) names, or None."""
    entry = catalog.lookup(model) or catalog.lookup(model.partition("@")[0])
    return entry.id if entry is not None else None


def to_api(doc: Any, path: VertexPath, catalog: Catalog) -> tuple[str, Any]:
    """(API version, Messages API body) of a Vertex body; ApiError for what
    Vertex refuses. A body that is not an object is passed on for
    `rules.check_request` to refuse in its words."""
    if not isinstance(doc, dict):
        return VERSION_2023, doc
    if "anthropic_version" not in doc:
        raise invalid("anthropic_version: Field required")
    version = doc["anthropic_version"]
    if not isinstance(version, str):
        raise invalid("anthropic_version: Input should be a valid string")
    if version not in VERSIONS:
        raise invalid(f"anthropic_version: {jsontext.dumps(version)} is not a valid version")
    body = {k: v for k, v in doc.items() if k != "anthropic_version"}
    if path.count_tokens:
        # count-tokens names the model in the body, with or without @version.
        if isinstance(body.get("model"), str):
            body["model"] = model_name(catalog, body["model"]) or body["model"]
        return VERSIONS[version], body
    if "model" in body:
        raise invalid("model: Extra inputs are not permitted")
    model = model_name(catalog, path.model)
    if model is None:
        raise ApiError(404, f"Publisher Model `{path.resource}` not found.")
    if path.method == "streamRawPredict":
        body["stream"] = True
    return VERSIONS[version], {"model": model, **body}


# -- the OAuth2 token endpoint ------------------------------------------------------------


def token_answer(form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """(status, JSON) for a token request (RFC 6749 section 5; the grants
    google-auth sends: ``refresh_token`` for authorized_user credentials,
    JWT bearer (RFC 7523) for service accounts; the assertion is not
    verified). Errors in Google's shape: ``{"error", "error_description"}``."""
    grant = form.get("grant_type")
    needs = {"refresh_token": "refresh_token", JWT_BEARER: "assertion"}.get(grant or "")
    if needs is None:
        return 400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant or ''}"}
    if not form.get(needs):
        return 400, {"error": "invalid_request", "error_description": f"Missing required parameter: {needs}"}
    return 200, {"access_token": TOKEN_PREFIX + secrets.token_urlsafe(24), "expires_in": TOKEN_SECONDS,
                 "token_type": "Bearer"}
