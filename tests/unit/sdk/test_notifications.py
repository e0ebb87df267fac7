"""verify_notification against notifications signed here, from the wire format of issue 2
§7 (built by hand, so the test also checks sigwire against the text)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from anfu import crypto
from anfu.sdk import NotificationSignatureError, PlatformKeys, verify_notification

NOW = 1_750_000_000
PATH = "/anfu/notify?shop=1"
EVENT = {"id": "ev_1", "type": "trade.paid", "created_at": NOW - 1.5,
         "data": {"trade_no": "T1", "status": "WAIT_SELLER_SEND_GOODS", "amount": 1000}}
BODY = json.dumps(EVENT).encode()


@pytest.fixture(scope="module")
def platform_key() -> crypto.PrivateKey:
    return crypto.generate_private_key("ed25519")


@pytest.fixture(scope="module")
def keys(platform_key: crypto.PrivateKey) -> list[dict[str, Any]]:
    return [{"key_id": "pk1", "alg": "ed25519",
             "public_key_pem": platform_key.public_key().public_pem(),
             "not_before": NOW - 86400, "not_after": NOW + 86400}]


def sign(key: crypto.PrivateKey, *, path: str = PATH, body: bytes = BODY,
         timestamp: int = NOW, nonce: str = "n0nce-0123456789abcdef", key_id: str = "pk1",
         alg: str = "ed25519") -> dict[str, str]:
    message = (f"ANFU-SIG-V1\nPOST\n{path}\n{timestamp}\n{nonce}\n"
               f"{hashlib.sha256(body).hexdigest()}\n").encode()
    signature = base64.b64encode(key.sign(message)).decode()
    return {"Content-Type": "application/json",
            "Anfu-Signature": f'key_id="{key_id}",alg="{alg}",timestamp="{timestamp}",'
                              f'nonce="{nonce}",signature="{signature}"'}


def check(headers: dict[str, str], keys: Any, *, body: bytes = BODY, path: str = PATH,
          now: float = NOW) -> dict[str, Any]:
    return verify_notification(headers=headers, body=body, path_qs=path, platform_keys=keys,
                               now=now)


def failed_check(headers: dict[str, str], keys: Any, **kw: Any) -> str:
    with pytest.raises(NotificationSignatureError) as info:
        check(headers, keys, **kw)
    return info.value.check


def test_good_notification_returns_the_event(platform_key: crypto.PrivateKey,
                                             keys: list[dict[str, Any]]) -> None:
    assert check(sign(platform_key), keys) == EVENT
    # A parsed key set and lower-case header names (as many frameworks give them) work too.
    lower = {k.lower(): v for k, v in sign(platform_key).items()}
    assert check(lower, PlatformKeys(keys)) == EVENT
    # The whole notify URL is accepted in place of its path and query.
    assert check(sign(platform_key), keys, path=f"https://shop.example{PATH}") == EVENT


def test_tampered_body_fails(platform_key: crypto.PrivateKey,
                             keys: list[dict[str, Any]]) -> None:
    tampered = BODY.replace(b"1000", b"1")
    assert failed_check(sign(platform_key), keys, body=tampered) == "signature_invalid"


def test_wrong_path_fails(platform_key: crypto.PrivateKey, keys: list[dict[str, Any]]) -> None:
    headers = sign(platform_key)
    assert failed_check(headers, keys, path="/anfu/notify?shop=2") == "signature_invalid"
    assert failed_check(headers, keys, path="/anfu/notify") == "signature_invalid"


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_skewed_timestamp_fails(platform_key: crypto.PrivateKey, keys: list[dict[str, Any]],
                                offset: int) -> None:
    headers = sign(platform_key, timestamp=NOW + offset)
    assert failed_check(headers, keys) == "timestamp_skew"


def test_timestamp_inside_window_passes(platform_key: crypto.PrivateKey,
                                        keys: list[dict[str, Any]]) -> None:
    assert check(sign(platform_key, timestamp=NOW - 299), keys) == EVENT


def test_unknown_key_fails(platform_key: crypto.PrivateKey,
                           keys: list[dict[str, Any]]) -> None:
    assert failed_check(sign(platform_key, key_id="pk-other"), keys) == "key_unknown"


def test_signature_by_another_key_fails(keys: list[dict[str, Any]]) -> None:
    stranger = crypto.generate_private_key("ed25519")
    assert failed_check(sign(stranger), keys) == "signature_invalid"


def test_algorithm_must_match_the_key(platform_key: crypto.PrivateKey,
                                      keys: list[dict[str, Any]]) -> None:
    assert failed_check(sign(platform_key, alg="rsa-sha256"), keys) == "algorithm_mismatch"


def test_expired_platform_key_fails(platform_key: crypto.PrivateKey,
                                    keys: list[dict[str, Any]]) -> None:
    expired = [{**keys[0], "not_after": NOW - 10}]
    assert failed_check(sign(platform_key), expired) == "key_not_valid"


def test_missing_or_malformed_header_fails(platform_key: crypto.PrivateKey,
                                           keys: list[dict[str, Any]]) -> None:
    assert failed_check({"Content-Type": "application/json"}, keys) == \
        "signature_header_missing"
    assert failed_check({"Anfu-Signature": "garbage"}, keys) == "signature_header_malformed"


def test_signed_body_that_is_not_an_event_fails(platform_key: crypto.PrivateKey,
                                                keys: list[dict[str, Any]]) -> None:
    body = b"[1, 2, 3]"
    assert failed_check(sign(platform_key, body=body), keys, body=body) == "body_invalid"
