"""Passkeys end to end in a real browser: headless Chromium, with a CDP virtual authenticator,
drives the platform's own page (GET /web/passkeys on the mobile zone) against a running
platform: add a passkey to a signed-in account, then sign in with it alone.

The page is opened at http://localhost:<mobile port> (the platform listens on 127.0.0.1):
that is the origin the platform trusts by default, and "localhost" its relying party id.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from anfu.sdk import WalletClient
from tests.browser.conftest import (
    add_virtual_authenticator,
    set_user_verified,
    virtual_credentials,
)
from tests.support import RunningPlatform, new_customer, start_platform

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("passkeys_browser"))
    try:
        yield running
    finally:
        running.stop()


def origin_of(platform: RunningPlatform) -> str:
    return f"http://localhost:{urlsplit(platform.mobile).port}"


def outcome(page: Page) -> dict[str, str | None]:
    """Wait for the page's result and return its status, error code, acr and text."""
    result = page.locator("#result[data-status]")
    result.wait_for()
    return {"status": result.get_attribute("data-status"),
            "error_code": result.get_attribute("data-error-code"),
            "acr": result.get_attribute("data-acr"),
            "credential_id": result.get_attribute("data-credential-id"),
            "text": result.inner_text()}


def audit(platform: RunningPlatform, user_id: str, name: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{platform.admin}/v1/audit",
                      headers=platform.admin_headers, params={"user_id": user_id, "name": name})
    reply.raise_for_status()
    return list(reply.json()["events"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_passkey_in_browser(page: Page, platform: RunningPlatform, customer: WalletClient,
                           name: str) -> tuple[str, str]:
    """Open the page with the customer's token, attach an authenticator, add a passkey;
    returns the authenticator id and the credential id."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{origin_of(platform)}/web/passkeys#access_token={customer.access_token}")
    assert "access_token" not in page.url
    authenticator_id = add_virtual_authenticator(page)
    page.fill("#passkey-name", name)
    page.click("#register")
    registered = outcome(page)
    assert registered["status"] == "ok", registered
    assert registered["text"] == f"Passkey \u201c{name}\u201d added."
    assert errors == [], errors
    assert registered["credential_id"]
    return authenticator_id, registered["credential_id"]


def test_add_a_passkey_then_sign_in_with_it(chromium_page: Page,
                                            platform: RunningPlatform) -> None:
    customer: WalletClient = new_customer(platform, bind_device=False)
    assert (customer.token_type, customer.acr) == ("Bearer", 2)
    user_id, phone = customer.user_id or "", customer.phone or ""
    authenticator_id, credential_id = add_passkey_in_browser(
        chromium_page, platform, customer, "Chromium passkey")

    # The authenticator holds a resident key for "localhost", for this account.
    held = virtual_credentials(authenticator_id)
    assert len(held) == 1
    assert held[0]["rpId"] == "localhost"
    assert held[0]["isResidentCredential"] is True
    assert base64.b64decode(held[0]["userHandle"]) == user_id.encode()
    assert base64.urlsafe_b64decode(credential_id + "==") == base64.b64decode(
        held[0]["credentialId"])

    # The platform has it, under the name typed on the page.
    listed = httpx.get(f"{platform.mobile}/v1/factors/passkeys",
                       headers=bearer(customer.access_token or "")).json()["passkeys"]
    assert [(p["credential_id"], p["name"]) for p in listed] == [
        (credential_id, "Chromium passkey")]
    assert [e["detail"]["credential_id"] for e in audit(
        platform, user_id, "identity:passkey:registered")] == [credential_id]

    # Sign in with the passkey alone; the page shows the level, the network the tokens.
    chromium_page.fill("#phone", phone)
    with chromium_page.expect_response(
            lambda r: "/v1/auth/challenges/" in r.url and r.request.method == "POST"
    ) as answered:
        chromium_page.click("#sign-in")
    signed_in = outcome(chromium_page)
    assert signed_in["status"] == "ok", signed_in
    assert signed_in["acr"] == "3"
    assert signed_in["credential_id"] == credential_id
    assert signed_in["text"] == "Signed in (assurance 3)."
    assert answered.value.status == 201
    tokens = answered.value.json()
    assert (tokens["user_id"], tokens["acr"], tokens["amr"]) == (user_id, 3, ["hwk", "uv"])
    assert tokens["session_id"] != customer.session_id

    # The access token the page got works, at level 3 with hwk and uv.
    me = httpx.get(f"{platform.mobile}/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    assert (me.json()["user_id"], me.json()["acr"], me.json()["amr"]) == (
        user_id, 3, ["hwk", "uv"])
    # ... and the platform recorded the login so.
    logins = audit(platform, user_id, "identity:session:login_succeeded")
    assert logins[-1]["session_id"] == tokens["session_id"]
    assert logins[-1]["detail"]["amr"] == ["hwk", "uv"]
    # The signature counter moved on both sides.
    assert virtual_credentials(authenticator_id)[0]["signCount"] >= 1
    passkey = httpx.get(f"{platform.mobile}/v1/factors/passkeys",
                        headers=bearer(tokens["access_token"])).json()["passkeys"][0]
    assert passkey["last_used_at"] is not None


def test_sign_in_without_user_verification_is_refused(chromium_page: Page,
                                                       platform: RunningPlatform) -> None:
    """The platform asks for userVerification "required". A CTAP2 authenticator that cannot
    verify the user (isUserVerified false: wrong PIN, unrecognised finger) does not sign at
    all, so Chromium rejects navigator.credentials.get with NotAllowedError, which the page
    reports as passkey_cancelled; the platform never sees an assertion. (An assertion
    without the UV flag, had a client sent one, is refused as passkey_user_verification:
    see tests/e2e/identity/test_passkeys_api.py.)"""
    customer: WalletClient = new_customer(platform, bind_device=False)
    user_id = customer.user_id or ""
    authenticator_id, _ = add_passkey_in_browser(chromium_page, platform, customer,
                                                 "No UV")
    set_user_verified(authenticator_id, False)
    answers: list[str] = []
    chromium_page.on("request", lambda r: answers.append(r.url)
                     if "/v1/auth/challenges/" in r.url else None)

    chromium_page.fill("#phone", customer.phone or "")
    chromium_page.click("#sign-in")
    refused = outcome(chromium_page)
    assert refused["status"] == "error", refused
    assert refused["error_code"] == "passkey_cancelled", refused
    assert refused["acr"] is None
    assert answers == []  # nothing was posted to the challenge
    assert [e["detail"]["amr"] for e in audit(
        platform, user_id, "identity:session:login_succeeded")] == [["pwd", "sms"]]
    assert audit(platform, user_id, "identity:passkey:failed") == []

    # Once the device verifies the user again, the same passkey signs in.
    set_user_verified(authenticator_id, True)
    chromium_page.click("#sign-in")
    again = outcome(chromium_page)
    assert (again["status"], again["acr"]) == ("ok", "3"), again


def test_an_unknown_phone_is_refused_like_an_unregistered_passkey(
        chromium_page: Page, platform: RunningPlatform) -> None:
    """An unknown number gets passkey options that allow no credential in particular (as a
    customer without passkeys would), so the browser offers its discoverable passkey for the
    site, and the platform refuses it as not registered to that account."""
    customer: WalletClient = new_customer(platform, bind_device=False)
    add_passkey_in_browser(chromium_page, platform, customer, "Mine")
    chromium_page.fill("#phone", "1" + str(secrets.randbelow(10**10)).zfill(10))
    chromium_page.click("#sign-in")
    refused = outcome(chromium_page)
    assert (refused["status"], refused["error_code"]) == ("error", "passkey_unknown"), refused
