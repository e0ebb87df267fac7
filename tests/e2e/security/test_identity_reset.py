"""Attack test of password reset (issue 16 item 9): unknown phone numbers differed from known
ones in ``expires_at``, in 429 against 202 on a second send, and in ``sms_code_invalid``
against ``sms_code_expired``. Now every step answers alike."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.identity.wire import new_phone_number, other_code, sign_up
from tests.support import RunningPlatform, start_platform

Shape = dict[str, Any]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    # The default per-phone limit (one code a minute): a second send must be refused alike.
    running = start_platform(tmp_path_factory.mktemp("identity_reset"))
    yield running
    running.stop()


def shape(reply: httpx.Response, sent_at: float) -> Shape:
    """Status, code and field names; times as offsets from the request, to the second."""
    body = reply.json()
    out: Shape = {"status": reply.status_code, "fields": sorted(body)}
    for name in ("code", "tries_left", "methods", "kind", "operation", "required_acr",
                 "retry_after_s", "proved", "current_acr"):
        if name in body:
            out[name] = body[name]
    if "expires_at" in body:
        out["expires_in"] = round(body["expires_at"] - sent_at)
    return out


def sequence(platform: RunningPlatform, number: str) -> list[Shape]:
    url = platform.mobile
    steps: list[Shape] = []

    def record(reply: httpx.Response, at: float) -> httpx.Response:
        steps.append(shape(reply, at))
        return reply

    at = time.time()
    start = record(httpx.post(f"{url}/v1/password-resets", json={"phone": number}), at).json()
    challenge = f"{url}/v1/auth/challenges/{start['challenge_id']}"
    # the code cannot be answered before it is sent
    at = time.time()
    record(httpx.post(challenge, json={"method": "sms", "code": "123456"}), at)
    at = time.time()
    record(httpx.post(f"{challenge}/sms"), at)
    at = time.time()
    record(httpx.post(f"{challenge}/sms"), at)  # again within the minute: limited
    for _ in range(6):  # five wrong codes, then the code is spent
        at = time.time()
        record(httpx.post(challenge, json={"method": "sms", "code": other_code("000000")}), at)
        time.sleep(1.1)  # past the quick-failure check, which is not what this test is about
    at = time.time()
    record(httpx.post(challenge, json={"method": "totp", "code": "123456"}), at)
    at = time.time()
    record(httpx.post(f"{url}/v1/password-resets/{start['challenge_id']}",
                      json={"new_password": "another fine passphrase 42"}), at)
    return steps


def test_a_known_and_an_unknown_number_get_identical_answers(
        platform: RunningPlatform) -> None:
    known, _ = sign_up(platform)
    unknown = new_phone_number()
    for_known, for_unknown = sequence(platform, known), sequence(platform, unknown)
    assert for_known == for_unknown
    statuses = [s["status"] for s in for_known]
    assert statuses[:4] == [200, 401, 202, 429]
    assert [s.get("code") for s in for_known[1:4]] == ["sms_code_expired", None,
                                                      "sms_send_limited"]
    assert [s.get("tries_left") for s in for_known[4:9]] == [4, 3, 2, 1, 0]
    assert for_known[9]["code"] == "sms_code_exhausted"
    assert for_known[10]["code"] == "sms_first"
    assert for_known[11]["code"] == "reset_incomplete"
    # the known number was sent a code; the unknown one was not
    assert platform.sms_messages(known) and not platform.sms_messages(unknown)


def test_a_wrong_code_takes_as_long_for_an_unknown_number(platform: RunningPlatform) -> None:
    def timed(number: str) -> float:
        start = httpx.post(f"{platform.mobile}/v1/password-resets", json={"phone": number})
        challenge = f"{platform.mobile}/v1/auth/challenges/{start.json()['challenge_id']}"
        assert httpx.post(f"{challenge}/sms").status_code == 202
        began = time.perf_counter()
        reply = httpx.post(challenge, json={"method": "sms", "code": "000000"})
        assert reply.json()["code"] in ("sms_code_invalid",)
        return time.perf_counter() - began

    known, _ = sign_up(platform)
    known_s = sorted(timed(known) for _ in range(1))
    unknown_s = sorted(timed(new_phone_number()) for _ in range(1))
    assert abs(known_s[0] - unknown_s[0]) < 0.25, (known_s, unknown_s)
