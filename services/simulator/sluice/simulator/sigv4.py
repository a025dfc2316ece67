"""AWS Signature Version 4, checked as Bedrock checks it, so a test proves
a client signed its request, for which region, with which key.

The ``Authorization`` header
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-auth-methods.html):
``AWS4-HMAC-SHA256 Credential=<AKID>/<yyyymmdd>/<region>/<service>/aws4_request,
SignedHeaders=<h1;h2;...>, Signature=<hex>``, with ``x-amz-date``
(``yyyymmddThhmmssZ``). The signature is recomputed with botocore's
``SigV4Auth`` over the received method, path, query, the headers named in
SignedHeaders (exactly those, whatever botocore would pick itself) and the
body, under the secret the simulator knows for the access key.

Refusals are 403s named as AWS names them, with AWS's wording where known:
``InvalidSignatureException`` "The request signature we calculated does
not match the signature you provided. ..." and
``UnrecognizedClientException`` "The security token included in the
request is invalid." (AWS Signature V4 troubleshooting:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html).
A missing or malformed header, or a scope for another service or region
(the deployment's `region`, when it has one), is an
``AccessDeniedException`` (CHOSEN: AWS says IncompleteSignatureException /
InvalidSignatureException there; AccessDenied keeps one name for "not
allowed here").

Not checked: the clock skew of ``x-amz-date`` (tests may run with a fixed
clock) and session tokens (``x-amz-security-token`` is signed like any header).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from sluice.simulator.rules import ApiError

SERVICE = "bedrock"
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
                   r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.")


def _denied(message: str, name: str = "AccessDeniedException") -> ApiError:
    return ApiError(403, message, name)


@dataclass(frozen=True)
class Signature:
    access_key: str
    date: str  # yyyymmdd
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str  # hex


def parse(authorization: str | None) -> Signature:
    """The parts of a SigV4 Authorization header; ApiError 403 when it is
    missing or not SigV4."""
    if not authorization:
        raise _denied("Missing Authentication Token")
    found = _AUTH.fullmatch(authorization.strip())
    if found is None:
        raise _denied("Authorization header is not AWS4-HMAC-SHA256 with Credential, SignedHeaders and Signature")
    scope = found["credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise _denied(f"Credential scope {found['credential']!r} is not <key>/<date>/<region>/<service>/aws4_request")
    return Signature(scope[0], scope[1], scope[2], scope[3], tuple(found["signed"].split(";")),
                     found["signature"])


def region_of(authorization: str | None) -> str:
    """The credential scope's region ("" when the header is not SigV4), for the record."""
    try:
        return parse(authorization).region
    except ApiError:
        return ""


def check(*, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes,
          authorization: str | None, amz_date: str | None, region: str,
          credentials: dict[str, str]) -> Signature:
    """Checks a request's signature (`url` as received: scheme, Host and
    raw path with query); the signature, or ApiError 403. `region`: the
    region the deployment serves ("" = any); `credentials`: access key ->
    secret (empty: the signature itself is not recomputed)."""
    sig = parse(authorization)
    if not amz_date or not _AMZ_DATE.fullmatch(amz_date):
        raise _denied("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if sig.date != amz_date[:8]:
        raise _denied(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                      f"HTTP: '{sig.date}' != '{amz_date[:8]}', from '{amz_date}'.", "InvalidSignatureException")
    if sig.service != SERVICE:
        raise _denied(f"Credential should be scoped to correct service: '{SERVICE}'.")
    if region and sig.region != region:
        raise _denied(f"Credential should be scoped to a valid region: signed for '{sig.region}', "
                      f"this endpoint is in '{region}'.")
    if "host" not in sig.signed_headers:
        raise _denied("'Host' must be a 'SignedHeader' in the AWS Authorization.", "InvalidSignatureException")
    if not credentials:
        return sig
    secret = credentials.get(sig.access_key)
    if secret is None:
        raise _denied("The security token included in the request is invalid.", "UnrecognizedClientException")
    if not hmac.compare_digest(expected(method=method, url=url, headers=headers, body=body, sig=sig,
                                        amz_date=amz_date, secret=secret), sig.signature):
        raise _denied(_MISMATCH, "InvalidSignatureException")
    return sig


class _Verifier(SigV4Auth):
    """botocore's signer, signing exactly the headers the client named."""

    def __init__(self, credentials: Credentials, region: str, signed: tuple[str, ...]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or ():
                chosen[name] = value
        return chosen


def expected(*, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes, sig: Signature,
             amz_date: str, secret: str) -> str:
    """The hex signature of a request under `secret` (what `sig.signature` should be)."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name.lower()] = value  # HTTPHeaders appends: repeated headers stay repeated
    request.context["timestamp"] = amz_date
    signer = _Verifier(Credentials(sig.access_key, secret), sig.region, sig.signed_headers)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)
