from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import MerchantIdentity, RunningPlatform


@pytest.fixture
def shop_factory(platform_urls: RunningPlatform,
                 make_merchant: Callable[..., MerchantIdentity]) -> Callable[..., Any]:
    from anfu.sdk import MerchantClient

    def make(alg: str = "ed25519", notify_url: str | None = None, fee_bps: int = 60,
             url: str | None = None, admin: str | None = None) -> Any:
        if admin is not None:
            from tests.support import create_merchant

            m = create_merchant(admin, alg=alg, notify_url=notify_url, fee_bps=fee_bps)
        else:
            m = make_merchant(alg=alg, notify_url=notify_url, fee_bps=fee_bps)
        client = MerchantClient(url or platform_urls.merchant, m.merchant_id, m.key_id,
                                m.alg, m.private_key_pem)
        client.identity = m
        return client

    return make
