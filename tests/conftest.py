from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import (
    MerchantIdentity,
    NotifyReceiver,
    RunningPlatform,
    create_merchant,
    new_customer,
    start_platform,
)


@pytest.fixture(scope="session")
def platform_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("platform"))
    yield running
    running.stop()


@pytest.fixture
def make_merchant(platform_urls: RunningPlatform) -> Callable[..., MerchantIdentity]:
    def make(alg: str = "ed25519", notify_url: str | None = None,
             fee_bps: int | None = 60) -> MerchantIdentity:
        return create_merchant(platform_urls.admin, alg=alg, notify_url=notify_url,
                               fee_bps=fee_bps)

    return make


@pytest.fixture
def funded_customer(platform_urls: RunningPlatform) -> Callable[..., Any]:
    def make(amount: int = 100_000, currency: str = "CNY",
             platform: RunningPlatform | None = None) -> Any:
        return new_customer(platform or platform_urls, amount=amount, currency=currency)

    return make


@pytest.fixture
def receiver() -> Iterator[NotifyReceiver]:
    r = NotifyReceiver().start()
    yield r
    r.stop()
