"""The browser harness works: Chromium starts, loads the passkeys page, and a virtual
authenticator answers ``navigator.credentials`` on http://localhost.

Only the page file is served (no API); the end-to-end passkey test runs against the platform.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from anfu.crypto import verify_authentication, verify_registration
from tests.browser.conftest import add_virtual_authenticator, virtual_credentials
from tests.softauthn import unb64url

if TYPE_CHECKING:
    from playwright.sync_api import Page

PAGE = Path(__file__).resolve().parents[2] / "src" / "anfu" / "api" / "web" / "passkeys.html"


class _PageOnly(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0].split("#")[0] != "/web/passkeys":
            self.send_error(404)
            return
        body = PAGE.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost", not 127.0.0.1: browsers treat http://localhost as a secure context and
        # a WebAuthn rp id must be a domain, never an IP address.
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def passkeys_page(chromium_page: Page, page_origin: str) -> Page:
    errors: list[str] = []
    chromium_page.on("pageerror", lambda error: errors.append(str(error)))
    chromium_page.goto(f"{page_origin}/web/passkeys")
    assert errors == [], errors
    return chromium_page


# Builds creation options the way the page does (bytes as ArrayBuffers), creates a passkey and
# returns its toJSON()-style form with base64url fields.
CREATE_LOCALLY = """async () => {
  const b64 = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
      .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const credential = await navigator.credentials.create({publicKey: {
    rp: {id: "localhost", name: "anfu harness"},
    user: {id: new TextEncoder().encode("harness-user"), name: "harness", displayName: "H"},
    challenge: new TextEncoder().encode("harness-challenge-0123456789"),
    pubKeyCredParams: [{type: "public-key", alg: -7}, {type: "public-key", alg: -8}],
    authenticatorSelection: {residentKey: "required", userVerification: "required"},
    attestation: "none",
    timeout: 10000,
  }});
  return {
    id: credential.id, rawId: b64(credential.rawId), type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: b64(credential.response.clientDataJSON),
      attestationObject: b64(credential.response.attestationObject),
      transports: credential.response.getTransports(),
    },
  };
}"""

GET_LOCALLY = """async (allowId) => {
  const b64 = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
      .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const unb64 = (text) => Uint8Array.from(
      atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const credential = await navigator.credentials.get({publicKey: {
    rpId: "localhost",
    challenge: new TextEncoder().encode("harness-challenge-9876543210"),
    allowCredentials: [{type: "public-key", id: unb64(allowId)}],
    userVerification: "required",
    timeout: 10000,
  }});
  const response = credential.response;
  return {
    id: credential.id, rawId: b64(credential.rawId), type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: b64(response.clientDataJSON),
      authenticatorData: b64(response.authenticatorData),
      signature: b64(response.signature),
      userHandle: response.userHandle ? b64(response.userHandle) : null,
    },
  };
}"""


def test_the_page_loads_with_its_controls(passkeys_page: Page) -> None:
    assert passkeys_page.title() == "anfu · Passkeys"
    for selector in ("#register", "#sign-in", "#phone", "#access-token", "#passkey-name",
                     "#result"):
        assert passkeys_page.locator(selector).count() == 1, selector
    assert passkeys_page.get_by_role("button", name="Add passkey").is_enabled()
    assert passkeys_page.get_by_label("Phone number").is_editable()
    assert passkeys_page.evaluate("typeof PublicKeyCredential") == "function"
    assert passkeys_page.evaluate("window.isSecureContext") is True


def test_the_page_reports_a_missing_token_without_calling_the_api(passkeys_page: Page) -> None:
    passkeys_page.click("#register")
    result = passkeys_page.locator("#result[data-status]")
    result.wait_for()
    assert result.get_attribute("data-status") == "error"
    assert result.get_attribute("data-error-code") == "missing_access_token"
    assert "Sign in first" in result.inner_text()


def test_the_page_takes_the_token_from_the_fragment(chromium_page: Page, page_origin: str
                                                    ) -> None:
    chromium_page.goto(f"{page_origin}/web/passkeys#access_token=v1.abc.def")
    assert chromium_page.input_value("#access-token") == "v1.abc.def"
    assert "access_token" not in chromium_page.url  # dropped from the address bar and history


def test_a_virtual_authenticator_creates_and_uses_a_passkey(passkeys_page: Page,
                                                             page_origin: str) -> None:
    authenticator_id = add_virtual_authenticator(passkeys_page)
    created: dict[str, Any] = passkeys_page.evaluate(CREATE_LOCALLY)

    assert created["type"] == "public-key"
    assert created["id"] == created["rawId"]
    client_data = json.loads(unb64url(created["response"]["clientDataJSON"]))
    assert client_data["type"] == "webauthn.create"
    assert client_data["origin"] == page_origin  # scheme, host and port; no trailing slash
    held = virtual_credentials(authenticator_id)
    assert [entry["rpId"] for entry in held] == ["localhost"]

    # What Chromium produced passes our own verification, as the platform will run it.
    passkey = verify_registration(created, challenge=b"harness-challenge-0123456789",
                                  rp_id="localhost", origins=[page_origin])
    assert passkey.user_verified is True
    assert passkey.credential_id == unb64url(created["rawId"])

    asserted: dict[str, Any] = passkeys_page.evaluate(GET_LOCALLY, created["rawId"])
    verified = verify_authentication(
        asserted, challenge=b"harness-challenge-9876543210", rp_id="localhost",
        origins=[page_origin], public_key=passkey.public_key, sign_count=passkey.sign_count)
    assert verified.user_handle == b"harness-user"
    assert verified.new_sign_count > passkey.sign_count
