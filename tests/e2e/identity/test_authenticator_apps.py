"""A standard authenticator app's codes are accepted: oathtool (the reference TOTP
generator of OATH Toolkit) stands in for the phone app, reading only the enrolment URI."""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import parse_qs, urlparse

import pytest

from anfu.sdk import WalletClient
from tests.support import PASSWORD, RunningPlatform, new_customer

pytestmark = pytest.mark.skipif(shutil.which("oathtool") is None,
                                reason="oathtool missing: `make tools` installs it")


def oathtool(secret: str, at: float) -> str:
    """The code oathtool shows at Unix time ``at``."""
    return subprocess.run(["oathtool", "--totp", "-b", f"--now=@{int(at)}", secret],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_oathtool_codes_enrol_and_log_in(platform: RunningPlatform) -> None:
    phone_app = new_customer(platform)
    enrolment = phone_app.enroll_totp()
    uri = urlparse(enrolment["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    secret = parse_qs(uri.query)["secret"][0]  # what the app reads from the QR code
    recovery = phone_app.confirm_totp(oathtool(secret, time.time()))
    assert len(recovery) == len(set(recovery)) == 10

    # A new phone now needs password, SMS code and the app's code. The code of the next
    # 30 s step is inside the ±1 step window and later than the one used to confirm.
    assert phone_app.phone is not None
    phone = phone_app.phone
    new_phone = WalletClient(platform.mobile,
                             sms_code=lambda _: platform.sms_code(phone),
                             totp_code=lambda _: oathtool(secret, time.time() + 30))
    session = new_phone.login(phone, PASSWORD)
    assert set(session["amr"]) == {"pwd", "sms", "otp"} and session["acr"] == 2
