"""The operator's CLI on a running platform's state: look a customer up, revoke their lost
phone (its session dies at once), read the audit trail; `anfu sms outbox`, `anfu auth
policy`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from anfu.sdk import ApiError
from tests.e2e.identity.wire import network_token, send_network_token
from tests.support import ROOT, RunningPlatform, new_customer


def anfu(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anfu.cli", *args], env=platform.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_operator_revokes_a_lost_phone_from_the_cli(platform_urls: RunningPlatform) -> None:
    customer = new_customer(platform_urls)
    shown = anfu(platform_urls, "users", "show", customer.phone)
    assert shown.returncode == 0, shown.stderr
    facts = json.loads(shown.stdout)
    assert facts["user_id"] == customer.user_id and facts["live_sessions"] == 1
    assert [d["device_id"] for d in facts["devices"]] == [customer.device_id]

    revoked = anfu(platform_urls, "users", "revoke-device", customer.device_id,
                   "--reason", "customer called: phone stolen")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["sessions_ended"] == 1
    with pytest.raises(ApiError) as dead:
        customer.wallet()
    assert dead.value.code == "session_revoked"

    trail = [json.loads(line) for line in anfu(platform_urls, "users", "audit",
                                               customer.user_id).stdout.splitlines()]
    names = [e["name"] for e in trail]
    assert names[0] == "identity:session:login_succeeded"
    assert names[-1] == "identity:device:revoked"
    assert trail[-1]["detail"]["reason"] == "customer called: phone stolen"
    missing = anfu(platform_urls, "users", "show", "+999999")
    assert missing.returncode == 1 and "user_not_found" in missing.stderr


def test_sms_outbox_and_policy_commands(platform_urls: RunningPlatform) -> None:
    customer = new_customer(platform_urls, bind_device=False)
    outbox = anfu(platform_urls, "sms", "outbox", "--phone", customer.phone, "--json")
    assert outbox.returncode == 0, outbox.stderr
    [message] = json.loads(outbox.stdout)
    assert "to sign in on a new device" in message["text"]
    policy = anfu(platform_urls, "auth", "policy", "--json")
    assert json.loads(policy.stdout)["operations"]["trade.pay"] == 2


def test_a_recent_sim_change_stops_sim_only_login(platform_urls: RunningPlatform) -> None:
    import httpx

    customer = new_customer(platform_urls, bind_device=False)

    def sim_login() -> httpx.Response:
        token = network_token(platform_urls, customer.phone)
        return send_network_token(platform_urls, customer.phone, token)

    assert sim_login().status_code == 201
    swapped = anfu(platform_urls, "carrier", "sim-change", customer.phone)  # the operator
    assert swapped.returncode == 0, swapped.stderr
    refused = sim_login()
    assert (refused.status_code, refused.json()["code"]) == (401, "sim_recently_changed")
    signals = httpx.get(f"{platform_urls.admin}/v1/users/{customer.user_id}/signals",
                        headers=platform_urls.admin_headers).json()
    assert signals["sim_changed_at"] is not None
    trail = anfu(platform_urls, "users", "audit", customer.user_id, "--name",
                 "identity:sim:recently_changed").stdout.splitlines()
    assert len(trail) == 1


def test_no_reset_by_phone_while_the_sim_change_hold_lasts(
        platform_urls: RunningPlatform) -> None:
    import httpx

    customer = new_customer(platform_urls, bind_device=False)
    resets = f"{platform_urls.mobile}/v1/password-resets"
    started = httpx.post(resets, json={"phone": customer.phone}).json()
    early = httpx.post(f"{platform_urls.mobile}/v1/auth/challenges/{started['challenge_id']}",
                       json={"method": "totp", "code": "123456"})
    assert (early.status_code, early.json()["code"]) == (401, "sms_first")

    assert anfu(platform_urls, "carrier", "sim-change", customer.phone).returncode == 0
    refused = httpx.post(resets, json={"phone": customer.phone})
    assert (refused.status_code, refused.json()["code"]) == (403, "sim_recently_changed")
