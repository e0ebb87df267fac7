from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.identity.wire import start_identity_platform
from tests.support import RunningPlatform


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The test module's own platform, per-phone SMS limits lifted (see
    ``start_identity_platform``)."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    running = start_identity_platform(tmp_path_factory.mktemp(module))
    yield running
    running.stop()
