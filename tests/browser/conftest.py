"""Headless Debian Chromium driven by Playwright, with a CDP virtual authenticator for passkeys.

We never download Playwright's own browsers: the system Chromium at ``/usr/bin/chromium`` is
launched directly, and the tests skip when it (or the playwright package) is absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, CDPSession, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# A virtual authenticator lives only while the CDP session that added it stays attached, so
# its session is kept here, by authenticator id, until the page closes.
_SESSIONS: dict[str, CDPSession] = {}


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def chromium_page(chromium_browser: Browser) -> Iterator[Page]:
    """A fresh page in its own browser context (no cookies or storage shared between tests)."""
    context = chromium_browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def add_virtual_authenticator(page: Page) -> str:
    """Attach a platform passkey authenticator (resident keys, user verification) to ``page``.

    Presence and verification are simulated, so ``navigator.credentials`` calls succeed
    without a prompt. Returns the CDP authenticator id.
    """
    session = page.context.new_cdp_session(page)
    session.send("WebAuthn.enable")
    added = session.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }})
    authenticator_id: str = added["authenticatorId"]
    _SESSIONS[authenticator_id] = session

    def forget(closed: Page) -> None:
        _SESSIONS.pop(authenticator_id, None)

    page.once("close", forget)
    return authenticator_id


def virtual_credentials(authenticator_id: str) -> list[dict[str, Any]]:
    """What the virtual authenticator holds: credentialId, rpId, userHandle, signCount …"""
    listed = _SESSIONS[authenticator_id].send(
        "WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    credentials: list[dict[str, Any]] = listed["credentials"]
    return credentials


def set_user_verified(authenticator_id: str, verified: bool) -> None:
    """Make the virtual authenticator's user verification (PIN, biometric) pass or fail."""
    _SESSIONS[authenticator_id].send("WebAuthn.setUserVerified", {
        "authenticatorId": authenticator_id, "isUserVerified": verified})
