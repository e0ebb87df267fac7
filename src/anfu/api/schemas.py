"""Request bodies. Unknown fields, wrong types (no "100" for 100), over-long strings and
non-positive amounts are refused with 422 ``validation_failed`` before anything runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

Amount = Annotated[StrictInt, Field(gt=0, le=10**12, description="minor units (fen, cents)")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"),
                     Field(description="ISO 4217 code", examples=["CNY"])]
Token = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                         pattern=r"^[A-Za-z0-9_\-.:]+$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class NewUser(Body):
    phone: Annotated[str, StringConstraints(min_length=6, max_length=16)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Login(Body):
    phone: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    device_id: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None


class Refresh(Body):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class MoneyMove(Body):
    amount: Amount
    currency: Currency


class P2PTransfer(Body):
    amount: Amount
    currency: Currency
    to_phone: Annotated[str, StringConstraints(min_length=6, max_length=16)] | None = None
    to_user_id: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    memo: Annotated[str, StringConstraints(max_length=140)] | None = None


class NewTrade(Body):
    out_trade_no: Token
    amount: Amount
    currency: Currency
    subject: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    mode: Literal["escrow", "direct"] = "escrow"
    notify_url: Annotated[str, StringConstraints(max_length=1024)] | None = None
    pay_expire_s: Annotated[StrictInt, Field(gt=0, le=15 * 24 * 3600)] | None = None


class NewRefund(Body):
    out_refund_no: Token
    amount: Amount
    reason: Annotated[str, StringConstraints(max_length=256)] | None = None


class Empty(Body):
    pass


class NewMerchant(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    alg: Literal["ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3", "rsa-pss-sha256"]
    public_key_pem: Annotated[str, StringConstraints(min_length=1, max_length=8192)]
    notify_url: Annotated[str, StringConstraints(max_length=1024)] | None = None
    fee_bps: Annotated[StrictInt, Field(ge=0, le=10000)] | None = None


class NewKey(Body):
    alg: Literal["ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3", "rsa-pss-sha256"]
    public_key_pem: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


# --- identity ---
Phone = Annotated[str, StringConstraints(min_length=6, max_length=16)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class PasskeyLogin(Body):
    phone: Phone


class CertificateLogin(Body):
    # PEM, or base64 of the DER
    certificate: Annotated[str, StringConstraints(min_length=64, max_length=8192)]


class SimLogin(Body):
    phone: Phone
    network_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class ChallengeAnswer(Body):
    method: Literal["password", "sms", "totp", "recovery_code", "device", "passkey",
                    "certificate"]
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    password: Secret | None = None
    device_id: Id | None = None
    signature: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    credential: dict[str, object] | None = None


class NewDevice(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    public_jwk: dict[str, object]
    app_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    app_version: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    app_cert_sha256: Annotated[str, StringConstraints(min_length=64, max_length=64)]
    os: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    rooted: bool = False
    emulator: bool = False
    key_storage: Literal["software", "hardware"] = "software"


class DeviceRename(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class TotpConfirm(Body):
    code: Annotated[str, StringConstraints(min_length=1, max_length=16)]


class PasskeyRegistration(Body):
    challenge_id: Id
    credential: dict[str, object]
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class NewPassword(Body):
    new_password: Secret


class ResetStart(Body):
    phone: Phone


class PhoneChange(Body):
    new_phone: Phone


class PhoneConfirm(Body):
    new_phone: Phone
    sms_challenge_id: Id
    code: Annotated[str, StringConstraints(min_length=1, max_length=16)]


class Limits(Body):
    currency: Currency
    high_value_minor: Annotated[StrictInt, Field(ge=0, le=10**12)]


class StepUp(Body):
    level: Annotated[StrictInt, Field(ge=1, le=3)]
