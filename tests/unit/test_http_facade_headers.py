"""The HTTP facade's reading of headers before any stage runs: the client's deadline, one
credential, a body encoding it can read."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from sluice.gateway.http_facade import _one_credential, _timeout
from sluice.rpc.errors import Reason, SluiceError


def request(*pairs: tuple[str, str]):
    return make_mocked_request("POST", "/v1/messages", headers=CIMultiDict(pairs))


def test_a_client_deadline_shorter_than_a_second_is_refused_not_turned_into_a_504():
    assert _timeout(request(("x-sluice-timeout-ms", "2500")), 600) == 2.5
    with pytest.raises(SluiceError) as err:
        _timeout(request(("x-sluice-timeout-ms", "1")), 600)
    assert err.value.reason is Reason.INVALID_REQUEST
    # The SDK's own timeout is informational: too short reads as none stated.
    assert _timeout(request(("x-stainless-timeout", "0.0001")), 600) == 600
    assert _timeout(request(("x-stainless-timeout", "30")), 600) == 30


def test_more_than_one_key_is_refused_whatever_the_header_order():
    _one_credential(request(("x-api-key", "a"), ("x-api-key", "a")))  # the same key twice
    for pairs in ((("x-api-key", "a"), ("x-api-key", "b")),
                  (("x-api-key", "a"), ("authorization", "Bearer b"))):
        with pytest.raises(SluiceError) as err:
            _one_credential(request(*pairs))
        assert err.value.reason is Reason.MALFORMED_API_KEY
