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
    alg: Literal["ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3"]
    public_key_pem: Annotated[str, StringConstraints(min_length=1, max_length=8192)]
    notify_url: Annotated[str, StringConstraints(max_length=1024)] | None = None
    fee_bps: Annotated[StrictInt, Field(ge=0, le=10000)] | None = None


class NewKey(Body):
    alg: Literal["ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3"]
    public_key_pem: Annotated[str, StringConstraints(min_length=1, max_length=8192)]
