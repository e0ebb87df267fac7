"""The authenticator app (TOTP, RFC 6238): enrolment (otpauth URI, PNG and SVG QR codes),
confirmation with a code computed from the secret, a login that then needs password, SMS
code and TOTP code, each code taken once, and the single-use recovery codes."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, unquote, urlsplit

from tests.e2e.identity.wire import (
    AuthenticatorApp,
    answer,
    confirm_totp,
    enrolment,
    login_challenge,
    login_to_second_factor,
    me,
    problem,
    sms_code_for,
    totp_customer,
)
from tests.support import RunningPlatform, new_customer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_enrolment_gives_the_secret_as_uri_png_and_svg(platform: RunningPlatform) -> None:
    client = new_customer(platform, bind_device=False)
    enrolled = enrolment(client)
    secret = enrolled["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)  # 160 bits of base32

    uri = urlsplit(enrolled["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/anfu:{client.phone}"
    query = parse_qs(uri.query)
    assert (query["secret"], query["issuer"]) == ([secret], ["anfu"])

    prefix, _, data = enrolled["qr_png"].partition(",")
    assert prefix == "data:image/png;base64"
    png = base64.b64decode(data, validate=True)
    assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == height >= 21 * 6  # a square QR code, 6 pixels a module at least

    svg = ET.fromstring(enrolled["qr_svg"])
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"


def test_confirming_needs_a_code_computed_from_the_secret(platform: RunningPlatform) -> None:
    client = new_customer(platform, bind_device=False)
    app = AuthenticatorApp(enrolment(client)["secret"])
    problem(confirm_totp(client, app.wrong_code()), 401, "totp_invalid")
    assert client.me()["factors"]["totp"] is False

    confirmed = confirm_totp(client, app.code())
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(re.fullmatch(r"[0-9a-z]{4}(-[0-9a-z]{4}){3}", code) for code in codes)
    factors = client.me()["factors"]
    assert (factors["totp"], factors["recovery_codes_left"]) == (True, 10)


def test_login_with_totp_enrolled_needs_password_sms_and_totp(
        platform: RunningPlatform) -> None:
    customer = totp_customer(platform)
    challenge = login_challenge(platform, customer.phone)
    assert challenge["methods"] == ["sms", "totp", "recovery_code"]
    code = sms_code_for(platform, challenge, customer.phone)

    after_sms = problem(answer(platform, challenge, "sms", code=code), 401, "step_up_required")
    assert after_sms["proved"] == ["pwd", "sms"]
    assert after_sms["methods"] == ["totp", "recovery_code"]
    # The SMS code was taken: it does not count twice.
    problem(answer(platform, challenge, "sms", code=code), 401, "sms_code_expired")

    tokens = answer(platform, challenge, "totp", code=customer.app.code())
    assert tokens.status_code == 201, tokens.text
    assert (tokens.json()["acr"], tokens.json()["amr"]) == (2, ["otp", "pwd", "sms"])


def test_password_and_totp_without_sms_do_not_log_in(platform: RunningPlatform) -> None:
    customer = totp_customer(platform)
    challenge = login_challenge(platform, customer.phone)
    after_totp = problem(answer(platform, challenge, "totp",
                                code=customer.app.code()), 401, "step_up_required")
    assert (after_totp["proved"], after_totp["methods"]) == (["otp", "pwd"], ["sms"])


def test_a_totp_code_is_accepted_once(platform: RunningPlatform) -> None:
    customer = totp_customer(platform)
    first = login_to_second_factor(platform, customer.phone)
    code = customer.app.code()
    assert answer(platform, first, "totp", code=code).status_code == 201
    second = login_to_second_factor(platform, customer.phone)
    problem(answer(platform, second, "totp", code=code), 401, "totp_reused")


def test_a_wrong_totp_code_is_refused(platform: RunningPlatform) -> None:
    customer = totp_customer(platform)
    challenge = login_to_second_factor(platform, customer.phone)
    problem(answer(platform, challenge, "totp",
                   code=customer.app.wrong_code()), 401, "totp_invalid")
    right = answer(platform, challenge, "totp", code=customer.app.code())
    assert right.status_code == 201, right.text


def test_a_recovery_code_replaces_the_totp_code_once(platform: RunningPlatform) -> None:
    customer = totp_customer(platform)
    recovery = customer.recovery_codes[3]
    first = login_to_second_factor(platform, customer.phone)
    tokens = answer(platform, first, "recovery_code", code=recovery)
    assert tokens.status_code == 201, tokens.text
    session = tokens.json()
    assert (session["acr"], session["amr"]) == (2, ["pwd", "rec", "sms"])
    assert me(platform, session["access_token"]).json()["factors"]["recovery_codes_left"] == 9

    second = login_to_second_factor(platform, customer.phone)
    problem(answer(platform, second, "recovery_code", code=recovery), 401,
            "recovery_code_invalid")  # spent codes are forgotten: "invalid", not "reused"
    other = answer(platform, second, "recovery_code",
                   code=customer.recovery_codes[4].upper())  # as typed from paper
    assert other.status_code == 201, other.text
