"""Passkeys (WebAuthn) through the real mobile zone, with a software FIDO2 authenticator:
registering one (a level-2 operation), signing in with it alone (acr 3, amr hwk+uv), every
check the platform must run on an assertion, a step-up to level 3 on a device whose key is
kept in software, and removing a passkey.

The platform's relying party is "localhost" and it trusts the origin
``http://localhost:<mobile port>``, where its passkeys page is served; the platform itself
listens on 127.0.0.1, and only the origin inside clientDataJSON names localhost.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from anfu.sdk import WalletClient
from tests.e2e.identity.wire import (
    Json,
    answer,
    audit_events,
    me,
    network_token,
    new_phone_number,
    problem,
)
from tests.softauthn import AuthenticatorRefused, SoftAuthenticator, b64url, unb64url
from tests.support import PASSWORD, RunningPlatform, new_customer


def origin_of(platform: RunningPlatform) -> str:
    return f"http://localhost:{urlsplit(platform.mobile).port}"


def call(platform: RunningPlatform, client: WalletClient, method: str, path: str,
         body: Json | None = None) -> httpx.Response:
    """One authenticated request, sent as is: a step-up problem comes back, not answered."""
    return httpx.request(method, platform.mobile + path, json=body,
                         headers=client.auth_headers(method, path))


def begin_registration(platform: RunningPlatform, client: WalletClient) -> Json:
    reply = call(platform, client, "POST", "/v1/factors/passkeys/options", {})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def finish_registration(platform: RunningPlatform, client: WalletClient, challenge_id: str,
                        credential: Json, name: str = "Test passkey") -> httpx.Response:
    return call(platform, client, "POST", "/v1/factors/passkeys",
                {"challenge_id": challenge_id, "credential": credential, "name": name})


def register(platform: RunningPlatform, client: WalletClient,
             authenticator: SoftAuthenticator, name: str = "Test passkey") -> str:
    """Register a passkey made by ``authenticator``; its credential id (base64url)."""
    begun = begin_registration(platform, client)
    credential = authenticator.create(begun["options"], origin_of(platform))
    reply = finish_registration(platform, client, begun["challenge_id"], credential, name)
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"credential_id": credential["id"], "name": name}
    return str(credential["id"])


def start_passkey_login(platform: RunningPlatform, phone: str) -> Json:
    reply = httpx.post(f"{platform.mobile}/v1/sessions/passkey", json={"phone": phone})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.fixture
def customer(platform_urls: RunningPlatform) -> WalletClient:
    """Signed in with password and SMS code (acr 2), no device bound: a Bearer session."""
    client: WalletClient = new_customer(platform_urls, bind_device=False)
    assert client.acr == 2
    return client


@pytest.fixture
def with_passkey(platform_urls: RunningPlatform, customer: WalletClient
                 ) -> tuple[WalletClient, SoftAuthenticator, str]:
    authenticator = SoftAuthenticator()
    return customer, authenticator, register(platform_urls, customer, authenticator)


# --- registration ----------------------------------------------------------------------------

def test_registering_needs_level_two(platform_urls: RunningPlatform) -> None:
    phone = new_phone_number()
    sim = WalletClient(platform_urls.mobile)
    sim.register(phone, "correct horse battery staple")
    token = network_token(platform_urls, phone)
    assert sim.login_with_sim(phone, token)["acr"] == 1
    reply = call(platform_urls, sim, "POST", "/v1/factors/passkeys/options", {})
    asked = problem(reply, 401, "step_up_required")
    assert (asked["operation"], asked["required_acr"], asked["current_acr"]) == (
        "factor.enroll", 2, 1)
    assert asked["kind"] == "step_up"
    assert reply.headers["www-authenticate"] == (
        'DPoP error="insufficient_user_authentication", acr_values="2"')


def test_register_a_passkey_and_list_it(platform_urls: RunningPlatform,
                                        customer: WalletClient) -> None:
    begun = begin_registration(platform_urls, customer)
    options = begun["options"]
    assert options["rp"]["id"] == "localhost"
    assert unb64url(options["user"]["id"]) == (customer.user_id or "").encode()
    assert options["user"]["name"] == customer.phone
    assert len(unb64url(options["challenge"])) >= 16
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert options.get("excludeCredentials", []) == []
    assert {p["alg"] for p in options["pubKeyCredParams"]} >= {-7, -8}

    authenticator = SoftAuthenticator()
    credential = authenticator.create(options, origin_of(platform_urls))
    saved = finish_registration(platform_urls, customer, begun["challenge_id"], credential,
                                "My laptop")
    assert saved.status_code == 201, saved.text
    credential_id = saved.json()["credential_id"]
    assert credential_id == credential["id"]

    listed = call(platform_urls, customer, "GET", "/v1/factors/passkeys").json()["passkeys"]
    assert [(p["credential_id"], p["name"], p["backed_up"], p["last_used_at"])
            for p in listed] == [(credential_id, "My laptop", False, None)]
    assert listed[0]["aaguid"] == "00000000-0000-0000-0000-000000000000"
    assert customer.me()["factors"]["passkeys"] == 1

    events = audit_events(platform_urls, customer.user_id or "",
                          "identity:passkey:registered")
    assert [e["detail"]["credential_id"] for e in events] == [credential_id]
    assert events[0]["session_id"] == customer.session_id

    # The registration challenge is spent: the same answer again is refused.
    again = finish_registration(platform_urls, customer, begun["challenge_id"], credential)
    problem(again, 401, "challenge_expired")


def test_registration_checks(platform_urls: RunningPlatform, customer: WalletClient) -> None:
    origin = origin_of(platform_urls)
    cases: list[tuple[Callable[[SoftAuthenticator, Json], Json], str]] = [
        (lambda a, o: a.create(o, "http://localhost:1"), "passkey_origin"),
        (lambda a, o: a.create(o, "https://evil.example"), "passkey_origin"),
        (lambda a, o: a.create(o, origin, challenge=secrets.token_bytes(32)),
         "passkey_challenge"),
        (lambda a, o: a.create(o, origin, user_verified=False), "passkey_user_verification"),
        (lambda a, o: a.create(o, origin, rp_id="evil.example"), "passkey_rp_id"),
    ]
    for make, code in cases:
        begun = begin_registration(platform_urls, customer)
        credential = make(SoftAuthenticator(), begun["options"])
        reply = finish_registration(platform_urls, customer, begun["challenge_id"], credential)
        problem(reply, 401, code)
    assert call(platform_urls, customer, "GET", "/v1/factors/passkeys").json() == {
        "passkeys": []}
    assert audit_events(platform_urls, customer.user_id or "",
                        "identity:passkey:registered") == []


def test_another_customers_registration_challenge_is_refused(
        platform_urls: RunningPlatform, customer: WalletClient) -> None:
    other: WalletClient = new_customer(platform_urls, bind_device=False)
    begun = begin_registration(platform_urls, customer)
    credential = SoftAuthenticator().create(begun["options"], origin_of(platform_urls))
    reply = finish_registration(platform_urls, other, begun["challenge_id"], credential)
    problem(reply, 401, "challenge_expired")


def test_the_same_authenticator_cannot_register_twice(
        platform_urls: RunningPlatform,
        with_passkey: tuple[WalletClient, SoftAuthenticator, str]) -> None:
    customer, authenticator, credential_id = with_passkey
    begun = begin_registration(platform_urls, customer)
    excluded = [item["id"] for item in begun["options"]["excludeCredentials"]]
    assert excluded == [credential_id]
    # A browser refuses before any key is made (InvalidStateError) ...
    with pytest.raises(AuthenticatorRefused, match="InvalidStateError"):
        authenticator.create(begun["options"], origin_of(platform_urls))
    # ... and a client that ignores the list is refused by the platform.
    ignoring = {**begun["options"], "excludeCredentials": []}
    replayed = reregister(authenticator, credential_id, ignoring, origin_of(platform_urls))
    reply = finish_registration(platform_urls, customer, begun["challenge_id"], replayed)
    problem(reply, 409, "passkey_taken")
    listed = call(platform_urls, customer, "GET", "/v1/factors/passkeys").json()["passkeys"]
    assert [p["credential_id"] for p in listed] == [credential_id]

    # Nor can another customer claim the same credential id for their account.
    other: WalletClient = new_customer(platform_urls, bind_device=False)
    begun = begin_registration(platform_urls, other)
    replayed = reregister(authenticator, credential_id, begun["options"],
                          origin_of(platform_urls))
    reply = finish_registration(platform_urls, other, begun["challenge_id"], replayed)
    problem(reply, 409, "passkey_taken")


def reregister(authenticator: SoftAuthenticator, credential_id: str, options: Json,
               origin: str) -> Json:
    """A registration response for a credential the authenticator already holds, as a client
    that ignores ``excludeCredentials`` would send (attestation "none" signs nothing)."""
    import cbor2

    from tests.softauthn import FLAG_AT, _client_data

    stored = authenticator.credentials[unb64url(credential_id)]
    client_data = _client_data("webauthn.create", options, origin, None)
    attested = (authenticator.aaguid + len(stored.credential_id).to_bytes(2, "big")
                + stored.credential_id + stored.cose_public_key())
    auth_data = authenticator._auth_data(stored.rp_id, True, FLAG_AT, 0) + attested
    attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data},
                              canonical=True)
    return {"id": credential_id, "rawId": credential_id, "type": "public-key",
            "clientExtensionResults": {},
            "response": {"clientDataJSON": b64url(client_data),
                         "attestationObject": b64url(attestation), "transports": ["internal"]}}


# --- signing in --------------------------------------------------------------------------------

def test_passkey_login_gives_level_three(
        platform_urls: RunningPlatform,
        with_passkey: tuple[WalletClient, SoftAuthenticator, str]) -> None:
    customer, authenticator, credential_id = with_passkey
    begun = start_passkey_login(platform_urls, customer.phone or "")
    assert begun["methods"] == ["passkey"]
    assert (begun["kind"], begun["operation"], begun["required_acr"]) == (
        "login", "session.login", 3)
    options = begun["passkey_options"]
    assert options["rpId"] == "localhost"
    assert options["userVerification"] == "required"
    assert [item["id"] for item in options["allowCredentials"]] == [credential_id]

    reply = answer(platform_urls, begun, "passkey",
                   credential=authenticator.get(options, origin_of(platform_urls)))
    assert reply.status_code == 201, reply.text
    tokens = reply.json()
    assert (tokens["acr"], tokens["amr"]) == (3, ["hwk", "uv"])
    assert tokens["user_id"] == customer.user_id
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"]

    mine = me(platform_urls, tokens["access_token"]).json()
    assert (mine["user_id"], mine["session_id"], mine["acr"], mine["amr"]) == (
        customer.user_id, tokens["session_id"], 3, ["hwk", "uv"])
    listed = call(platform_urls, customer, "GET", "/v1/factors/passkeys").json()["passkeys"]
    assert listed[0]["last_used_at"] is not None
    logins = audit_events(platform_urls, customer.user_id or "",
                          "identity:session:login_succeeded")
    assert logins[-1]["session_id"] == tokens["session_id"]
    assert logins[-1]["detail"]["amr"] == ["hwk", "uv"]

    # The challenge is spent: the same assertion cannot log in twice.
    again = answer(platform_urls, begun, "passkey",
                   credential=authenticator.get(options, origin_of(platform_urls)))
    problem(again, 401, "challenge_expired")


def tamper_signature(credential: Json) -> Json:
    """Flip one bit inside the ECDSA signature's r value (the DER framing stays valid)."""
    signature = bytearray(unb64url(credential["response"]["signature"]))
    signature[10] ^= 0x01
    return {**credential, "response": {**credential["response"],
                                       "signature": b64url(bytes(signature))}}


def test_each_assertion_check_refuses_with_its_code(
        platform_urls: RunningPlatform,
        with_passkey: tuple[WalletClient, SoftAuthenticator, str]) -> None:
    customer, authenticator, credential_id = with_passkey
    origin = origin_of(platform_urls)
    phone = customer.phone or ""

    # One good sign-in moves the stored counter to 1.
    first = start_passkey_login(platform_urls, phone)
    good = authenticator.get(first["passkey_options"], origin)
    assert answer(platform_urls, first, "passkey", credential=good).status_code == 201

    cases: list[tuple[str, Callable[[Json], Json]]] = [
        ("passkey_origin", lambda o: authenticator.get(o, "https://evil.example")),
        ("passkey_origin", lambda o: authenticator.get(o, "http://127.0.0.1:"
                                                          + origin.rsplit(":", 1)[1])),
        ("passkey_challenge", lambda o: authenticator.get(
            o, origin, challenge=secrets.token_bytes(32))),
        ("passkey_rp_id", lambda o: authenticator.get(o, origin, rp_id="evil.example")),
        ("passkey_user_verification", lambda o: authenticator.get(
            o, origin, user_verified=False)),
        ("passkey_signature", lambda o: tamper_signature(authenticator.get(o, origin))),
        # A cloned authenticator: a genuine signature, but the counter does not move on.
        ("passkey_sign_count", lambda o: authenticator.get(o, origin, sign_count=1)),
        ("passkey_sign_count", lambda o: authenticator.get(o, origin, sign_count=0)),
        # The assertion that already logged in, replayed to a new challenge.
        ("passkey_challenge", lambda o: good),
        ("passkey_malformed", lambda o: {**good, "response": {
            **good["response"], "authenticatorData": "not*base64"}}),
    ]
    for code, make in cases:
        begun = start_passkey_login(platform_urls, phone)
        reply = answer(platform_urls, begun, "passkey", credential=make(begun["passkey_options"]))
        problem(reply, 401, code)
        if code == "passkey_sign_count":  # what the platform holds
            authenticator.credentials[unb64url(credential_id)].sign_count = 1
    failures = audit_events(platform_urls, customer.user_id or "", "identity:passkey:failed")
    assert {e["detail"]["check"] for e in failures} >= {
        "origin", "challenge", "rp_id", "user_verification", "signature", "sign_count"}

    last = start_passkey_login(platform_urls, phone)
    reply = answer(platform_urls, last, "passkey",
                   credential=authenticator.get(last["passkey_options"], origin))
    assert reply.status_code == 201, reply.text
    assert authenticator.credentials[unb64url(credential_id)].sign_count == 2


def test_a_refused_answer_leaves_the_login_challenge_open(
        platform_urls: RunningPlatform,
        with_passkey: tuple[WalletClient, SoftAuthenticator, str]) -> None:
    customer, authenticator, _ = with_passkey
    origin = origin_of(platform_urls)
    begun = start_passkey_login(platform_urls, customer.phone or "")
    options = begun["passkey_options"]
    bad = answer(platform_urls, begun, "passkey",
                 credential=authenticator.get(options, origin, user_verified=False))
    problem(bad, 401, "passkey_user_verification")
    good = answer(platform_urls, begun, "passkey", credential=authenticator.get(options, origin))
    assert good.status_code == 201, good.text
    assert good.json()["amr"] == ["hwk", "uv"]


def test_a_passkey_of_another_customer_is_refused(
        platform_urls: RunningPlatform,
        with_passkey: tuple[WalletClient, SoftAuthenticator, str]) -> None:
    customer, authenticator, _ = with_passkey
    other: WalletClient = new_customer(platform_urls, bind_device=False)
    other_key = SoftAuthenticator()
    other_id = register(platform_urls, other, other_key)

    begun = start_passkey_login(platform_urls, customer.phone or "")
    # The other customer's authenticator signs this very challenge, properly.
    stolen = other_key.get(begun["passkey_options"], origin_of(platform_urls),
                           credential_id=unb64url(other_id))
    reply = answer(platform_urls, begun, "passkey", credential=stolen)
    problem(reply, 401, "passkey_unknown")
    # A credential id nobody registered is refused the same way.
    reply = answer(platform_urls, begun, "passkey", credential=stranger_assertion(
        begun["passkey_options"], origin_of(platform_urls)))
    problem(reply, 401, "passkey_unknown")
    # Still open and still the customer's own passkey works.
    mine = authenticator.get(begun["passkey_options"], origin_of(platform_urls))
    assert answer(platform_urls, begun, "passkey", credential=mine).status_code == 201


def test_an_unknown_phone_gets_the_same_kind_of_answer(platform_urls: RunningPlatform,
                                                       customer: WalletClient) -> None:
    """No passkey yet and no account at all look alike: no account probing."""
    known = start_passkey_login(platform_urls, customer.phone or "")
    unknown = start_passkey_login(platform_urls, new_phone_number())
    assert sorted(known) == sorted(unknown)
    assert known["passkey_options"]["allowCredentials"] == []
    assert unknown["passkey_options"]["allowCredentials"] == []
    reply = answer(platform_urls, unknown, "passkey", credential=stranger_assertion(
        unknown["passkey_options"], origin_of(platform_urls)))
    problem(reply, 401, "passkey_unknown")  # as for a known phone, below
    reply = answer(platform_urls, known, "passkey", credential=stranger_assertion(
        known["passkey_options"], origin_of(platform_urls)))
    problem(reply, 401, "passkey_unknown")


def stranger_assertion(options: Json, origin: str) -> Json:
    """A well-formed assertion by a passkey this platform never registered."""
    stranger = SoftAuthenticator()
    stranger.create({"rp": {"id": "localhost", "name": "anfu"},
                     "user": {"id": b64url(b"stranger"), "name": "s", "displayName": "s"},
                     "challenge": b64url(secrets.token_bytes(32)),
                     "pubKeyCredParams": [{"type": "public-key", "alg": -7}]}, origin)
    return stranger.get(options, origin, credential_id=next(iter(stranger.credentials)))


# --- step-up ---------------------------------------------------------------------------------

def test_step_up_to_level_three_with_a_passkey(platform_urls: RunningPlatform,
                                               shop_factory: Callable[..., Any]) -> None:
    # The phone's key is kept in software: it cannot give level 3 (no hwk).
    phone: WalletClient = new_customer(platform_urls, amount=20_000, key_storage="software")
    assert phone.token_type == "DPoP"
    authenticator = SoftAuthenticator()
    credential_id = register(platform_urls, phone, authenticator)

    shop = shop_factory()
    trade = shop.create_trade(out_trade_no="o" + secrets.token_hex(8), amount=1500,
                              currency="CNY", subject="first purchase", mode="direct")
    path = f"/v1/trades/{trade['trade_no']}/pay"
    reply = call(platform_urls, phone, "POST", path)
    asked = problem(reply, 401, "step_up_required")
    assert (asked["kind"], asked["operation"], asked["required_acr"],
            asked["current_acr"]) == ("step_up", "trade.pay", 3, 2)
    assert (asked["amount"], asked["currency"], asked["payee"]) == (1500, "CNY", "Test Shop")
    assert asked["methods"] == ["passkey"]  # the software device key would not do
    assert [item["id"] for item in asked["passkey_options"]["allowCredentials"]] == [
        credential_id]
    assert reply.headers["www-authenticate"].endswith('acr_values="3"')

    stepped = answer(platform_urls, asked, "passkey", credential=authenticator.get(
        asked["passkey_options"], origin_of(platform_urls)))
    assert stepped.status_code == 200, stepped.text
    assert stepped.json()["acr"] == 3
    assert {"hwk", "uv"} <= set(stepped.json()["amr"])
    assert stepped.json()["session_id"] == phone.session_id

    paid = call(platform_urls, phone, "POST", path)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "TRADE_SUCCESS"
    events = audit_events(platform_urls, phone.user_id or "", "identity:session:stepped_up")
    assert events[-1]["detail"]["operation"] == "trade.pay"
    assert {"hwk", "uv"} <= set(events[-1]["detail"]["amr"])


# --- removing -------------------------------------------------------------------------------

def test_delete_a_passkey(platform_urls: RunningPlatform,
                          with_passkey: tuple[WalletClient, SoftAuthenticator, str]) -> None:
    customer, authenticator, credential_id = with_passkey
    kept = register(platform_urls, customer, SoftAuthenticator(), "Second")
    unproved = call(platform_urls, customer, "DELETE", f"/v1/factors/passkeys/{credential_id}",
                    {"current_password": "not the password"})
    problem(unproved, 401, "invalid_credentials")  # the password again, not only a session
    gone = call(platform_urls, customer, "DELETE", f"/v1/factors/passkeys/{credential_id}",
                {"current_password": PASSWORD})
    assert gone.status_code == 204, gone.text
    listed = call(platform_urls, customer, "GET", "/v1/factors/passkeys").json()["passkeys"]
    assert [p["credential_id"] for p in listed] == [kept]
    again = call(platform_urls, customer, "DELETE", f"/v1/factors/passkeys/{credential_id}",
                 {"current_password": PASSWORD})
    problem(again, 404, "passkey_not_found")
    removed = audit_events(platform_urls, customer.user_id or "", "identity:passkey:removed")
    assert [e["detail"]["credential_id"] for e in removed] == [credential_id]

    # The removed passkey no longer signs in.
    begun = start_passkey_login(platform_urls, customer.phone or "")
    assert [item["id"] for item in begun["passkey_options"]["allowCredentials"]] == [kept]
    reply = answer(platform_urls, begun, "passkey", credential=authenticator.get(
        begun["passkey_options"], origin_of(platform_urls), credential_id=unb64url(credential_id)))
    problem(reply, 401, "passkey_unknown")

    # Another customer cannot remove someone else's passkey.
    other: WalletClient = new_customer(platform_urls, bind_device=False)
    foreign = call(platform_urls, other, "DELETE", f"/v1/factors/passkeys/{kept}",
                   {"current_password": PASSWORD})
    problem(foreign, 404, "passkey_not_found")
