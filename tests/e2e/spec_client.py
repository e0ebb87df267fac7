"""A merchant client written only from section 6 of issue 2 (the ANFU-SIG-V1 wire format).

It deliberately imports nothing from ``anfu``: if the platform and this file agree, the
wire format in the issue is complete enough for an outside merchant to implement. Only the
standard library, httpx and cryptography are used.

Implemented: ed25519 and rsa-sha256 (RSASSA-PKCS1-v1_5, SHA-256) request signing, and
verification of the platform's Ed25519 ``Anfu-Signature`` on every response.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

LABEL = "ANFU-SIG-V1"
_PARAM = re.compile(r'\s*([A-Za-z_]+)="([^"]*)"\s*(?:,|$)')


class SpecSignatureError(Exception):
    """A response signature is missing, malformed or does not verify."""


class SpecApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code')}: {body.get('detail')}")
        self.status = status
        self.code = body.get("code")
        self.body = body


def signing_string(first: str, path_qs: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """``first`` is the METHOD for requests and the status code for responses."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{LABEL}\n{first}\n{path_qs}\n{timestamp}\n{nonce}\n{digest}\n".encode()


def parse_params(value: str) -> dict[str, str]:
    """``k="v",k="v"`` → dict; refuses anything else so a sloppy header is not half-read."""
    params: dict[str, str] = {}
    pos = 0
    value = value.strip()
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None:
            raise SpecSignatureError(f"malformed signature header: {value!r}")
        params[match.group(1)] = match.group(2)
        pos = match.end()
    return params


@dataclass
class SpecResponse:
    status: int
    path_qs: str
    headers: httpx.Headers
    body: bytes
    # The request's merchant id and nonce the answer is bound to; "-" for an unsigned one.
    merchant_id: str = "-"
    request_nonce: str = "-"

    def json(self) -> Any:
        return json.loads(self.body)


def verify_response(resp: SpecResponse, platform_keys: list[dict[str, Any]]) -> None:
    """Check ``Anfu-Signature`` over status, request path+query, timestamp, nonce, body hash."""
    header = resp.headers.get("Anfu-Signature")
    if not header:
        raise SpecSignatureError(f"{resp.status} response carries no Anfu-Signature")
    params = parse_params(header)
    for name in ("key_id", "alg", "timestamp", "nonce", "signature"):
        if name not in params:
            raise SpecSignatureError(f"Anfu-Signature lacks {name}")
    if params["alg"] != "ed25519":
        raise SpecSignatureError(f"unexpected response alg {params['alg']!r}")
    key = next((k for k in platform_keys if k["key_id"] == params["key_id"]), None)
    if key is None:
        raise SpecSignatureError(f"unknown platform key {params['key_id']!r}")
    public = serialization.load_pem_public_key(key["public_key_pem"].encode())
    if not isinstance(public, Ed25519PublicKey):
        raise SpecSignatureError("platform key is not an Ed25519 key")
    digest = hashlib.sha256(resp.body).hexdigest()
    message = (f"{LABEL}\n{resp.status}\n{resp.path_qs}\n{params['timestamp']}\n"
               f"{params['nonce']}\n{resp.merchant_id}\n{resp.request_nonce}\n{digest}\n"
               ).encode()
    try:
        public.verify(base64.b64decode(params["signature"], validate=True), message)
    except (InvalidSignature, ValueError) as exc:
        raise SpecSignatureError("response signature does not verify") from exc


class SpecMerchantClient:
    def __init__(self, base_url: str, merchant_id: str, key_id: str, alg: str,
                 private_key_pem: str, *, timeout: float = 10.0) -> None:
        if alg not in ("ed25519", "rsa-sha256"):
            raise ValueError(f"the spec client implements ed25519 and rsa-sha256, not {alg}")
        self.base_url = base_url.rstrip("/")
        self.merchant_id = merchant_id
        self.key_id = key_id
        self.alg = alg
        self._key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        self._http = httpx.Client(timeout=timeout)
        self.platform_keys: list[dict[str, Any]] = []
        self.verified_responses = 0
        self.last_status = 0

    def close_client(self) -> None:
        self._http.close()

    def _sign(self, message: bytes) -> bytes:
        if self.alg == "ed25519":
            assert isinstance(self._key, Ed25519PrivateKey)
            return self._key.sign(message)
        assert isinstance(self._key, RSAPrivateKey)
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def authorization(self, method: str, path_qs: str, body: bytes,
                      timestamp: str | None = None, nonce: str | None = None) -> str:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_urlsafe(24)  # 32 chars of [A-Za-z0-9_-]
        signature = self._sign(signing_string(method, path_qs, timestamp, nonce, body))
        return (f'{LABEL} merchant_id="{self.merchant_id}",key_id="{self.key_id}",'
                f'alg="{self.alg}",timestamp="{timestamp}",nonce="{nonce}",'
                f'signature="{base64.b64encode(signature).decode()}"')

    def raw(self, method: str, path_qs: str, payload: Any = None, *,
            signed: bool = True) -> SpecResponse:
        """Send one request; return the response unverified (tests tamper with it)."""
        body = b"" if payload is None else json.dumps(payload).encode()
        url = self.base_url + path_qs
        # The path as it goes on the wire includes any prefix of base_url.
        parts = urlsplit(url)
        sent_path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        bound = ("-", "-")
        if signed:
            nonce = secrets.token_urlsafe(24)
            headers["Authorization"] = self.authorization(method, sent_path, body, nonce=nonce)
            bound = (self.merchant_id, nonce)
        reply = self._http.request(method, url, content=body, headers=headers)
        return SpecResponse(reply.status_code, sent_path, reply.headers, reply.content, *bound)

    def fetch_platform_keys(self) -> list[dict[str, Any]]:
        # Trust on first use: the key list must at least be signed by a key it contains.
        resp = self.raw("GET", "/v1/platform/keys", signed=False)
        keys: list[dict[str, Any]] = resp.json()["keys"]
        verify_response(resp, keys)
        self.verified_responses += 1
        self.platform_keys = keys
        return keys

    def call(self, method: str, path_qs: str, payload: Any = None) -> dict[str, Any]:
        if not self.platform_keys:
            self.fetch_platform_keys()
        resp = self.raw(method, path_qs, payload)
        verify_response(resp, self.platform_keys)
        self.verified_responses += 1
        self.last_status = resp.status
        data: dict[str, Any] = resp.json() if resp.body else {}
        if resp.status >= 400:
            raise SpecApiError(resp.status, data)
        return data

    # The routes of section 6.
    def create_trade(self, **fields: Any) -> dict[str, Any]:
        return self.call("POST", "/v1/trades", fields)

    def get_trade(self, trade_no: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/trades/{trade_no}")

    def find_trade(self, out_trade_no: str) -> dict[str, Any]:
        return self.call("GET", "/v1/trades?" + urlencode({"out_trade_no": out_trade_no}))

    def ship(self, trade_no: str) -> dict[str, Any]:
        return self.call("POST", f"/v1/trades/{trade_no}/ship")

    def refund(self, trade_no: str, out_refund_no: str, amount: int) -> dict[str, Any]:
        return self.call("POST", f"/v1/trades/{trade_no}/refunds",
                         {"out_refund_no": out_refund_no, "amount": amount})
