"""A merchant-zone answer is signed for one merchant and one request (issue 16 item 10):
one merchant's signed answer shown to another merchant's client, or an old answer replayed
to a new request, does not verify."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from anfu.sdk import ResponseSignatureError
from tests.support import RunningPlatform


def signed_get(shop: Any, path: str) -> httpx.Response:
    return shop._send_signed("GET", path, None, None)  # type: ignore[no-any-return]


def as_answer_to(response: httpx.Response, request: httpx.Request) -> httpx.Response:
    return httpx.Response(response.status_code, headers=response.headers,
                          content=response.content, request=request)


def test_one_merchants_answer_does_not_verify_for_another(
        platform_urls: RunningPlatform, shop_factory: Callable[..., Any]) -> None:
    alice, bob = shop_factory(), shop_factory()
    answer = signed_get(alice, "/v1/balance")
    alice._verify_response(answer)  # genuine for the merchant that asked
    bobs_request = signed_get(bob, "/v1/balance").request
    with pytest.raises(ResponseSignatureError):
        bob._verify_response(as_answer_to(answer, bobs_request))


def test_an_old_answer_does_not_verify_for_a_new_request(
        platform_urls: RunningPlatform, shop_factory: Callable[..., Any]) -> None:
    shop = shop_factory()
    old = signed_get(shop, "/v1/balance")
    new = signed_get(shop, "/v1/balance")
    shop._verify_response(new)
    with pytest.raises(ResponseSignatureError):
        shop._verify_response(as_answer_to(old, new.request))
