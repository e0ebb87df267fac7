"""The phone's side of authentication: logging in with two factors, binding the device's key,
signing a DPoP proof for every request of a bound session, and answering step-up challenges.

    phone = WalletClient(url, sms_code=lambda challenge: input("SMS code: "),
                         password=lambda challenge: getpass("Password: "))
    phone.login("13800000000", "correct horse battery")       # password + SMS code
    phone.bind_device("My phone", keystore=Path("device.json"), passphrase=b"...")
    phone.pay(trade_no)   # a step-up is answered with the device key, then retried

A step-up takes the device key first; level 3 (a new payee, a large amount) also wants the
password again once the login is older than the policy's level-3 window (300 s), so give the
client a ``password`` source (the app's prompt), as above.

Later, on the same phone, the device key replaces the SMS code:

    phone = WalletClient.from_keystore(url, Path("device.json"), passphrase=b"...")
    phone.login("13800000000", "correct horse battery")       # password + device key
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from anfu.crypto.csr import device_csr_pem
from anfu.crypto.jose import DeviceKey
from anfu.crypto.keystore import load_device_keystore, save_device_keystore
from anfu.sdk.errors import ApiError, SdkError, json_object, raise_for_problem
from anfu.sdk.tls import ClientCert, Verify, client_verify
from anfu.sdk.txn import Approver, answer_signature_required

Json = dict[str, Any]
CodeSource = Callable[[Json], str]
"""Given the challenge (operation, amount, payee, methods …), return the code the person
typed: the SMS code, or the authenticator app's code."""
Session = TypeVar("Session", bound="MobileSession")
Attester = Callable[[DeviceKey, bytes], list[str]]
"""The phone's Keystore attesting ``key`` for ``challenge``: the certificate chain."""
MAX_STEPS = 6
DPOP = "DPoP"  # the token type of a session bound to a device key


class MobileSession:
    """Holds one customer's session on the mobile zone and, once bound, the device key."""

    def __init__(self, base_url: str, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None,
                 access_token: str | None = None, refresh_token: str | None = None,
                 device_key: DeviceKey | None = None, device_id: str | None = None,
                 sms_code: CodeSource | None = None, totp_code: CodeSource | None = None,
                 password: Callable[[Json], str] | None = None,
                 approve_transaction: Approver | None = None,
                 verify: Verify = True, cert: ClientCert | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.token_type = DPOP if access_token and device_key else "Bearer"
        self.user_id: str | None = None
        self.phone: str | None = None
        self.session_id: str | None = None
        self.acr: int | None = None
        self.device_key = device_key
        self.device_id = device_id
        self.sms_code = sms_code
        self.totp_code = totp_code
        self.password_source = password
        self.approve_transaction = approve_transaction
        self.certificate_pem: str | None = None
        # Refresh tokens rotate and a reused one revokes the session: only one refresh
        # may be in flight, and a caller that lost the race retries with the new token.
        self._refresh_lock = threading.Lock()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  transport=transport,
                                  verify=client_verify(verify, cert),
                                  headers={"Accept": "application/json",
                                           "User-Agent": "anfu-sdk-python"})

    def __repr__(self) -> str:  # tokens are secrets: never in a repr or a log line
        return (f"<{type(self).__name__} user_id={self.user_id!r} device_id={self.device_id!r}"
                f" logged_in={self.access_token is not None}>")

    def close(self) -> None:
        self._http.close()

    # -- the device keystore ------------------------------------------------------------
    @classmethod
    def from_keystore(cls: type[Session], base_url: str, path: Path, passphrase: bytes,
                      **options: Any) -> Session:
        """A client holding the device key saved by ``bind_device(keystore=...)``."""
        key, meta = load_device_keystore(path, passphrase)
        client = cls(base_url, device_key=key, device_id=meta.get("device_id"), **options)
        client.user_id = meta.get("user_id") or None
        client.phone = meta.get("phone") or None
        client.certificate_pem = meta.get("certificate") or None
        return client

    def save_keystore(self, path: Path, passphrase: bytes) -> None:
        if self.device_key is None or self.device_id is None:
            raise SdkError("no bound device key to save: call bind_device() first")
        save_device_keystore(path, self.device_key, passphrase,
                             {"device_id": self.device_id, "user_id": self.user_id or "",
                              "phone": self.phone or "", "base_url": self.base_url,
                              "certificate": self.certificate_pem or ""})

    # -- logging in ---------------------------------------------------------------------
    def register(self, phone: str, password: str) -> Json:
        """Create an account; returns ``{user_id, phone, created_at}`` (does not log in)."""
        return self._public("POST", "/v1/users", {"phone": phone, "password": password})

    def login(self, phone: str, password: str) -> Json:
        """Password, then the second factor the platform asks for: this device's key if it
        is bound to the account, otherwise the SMS code (and the TOTP code if enrolled)."""
        body: Json = {"phone": phone, "password": password}
        if self.device_id is not None:
            body["device_id"] = self.device_id
        try:
            session = self._public("POST", "/v1/sessions", body)
        except ApiError as exc:
            if exc.code != "step_up_required":
                raise
            session = self._complete(exc.body, password=password)
        self.phone = phone
        return self._store(session)

    def login_with_sim(self, phone: str, network_token: str) -> Json:
        """One factor: the operator vouches that this SIM holds ``phone``."""
        session = self._public("POST", "/v1/sessions/sim",
                               {"phone": phone, "network_token": network_token})
        self.phone = phone
        return self._store(session)

    def refresh(self) -> Json:
        """Rotate the refresh token and get a new access token."""
        if self.refresh_token is None:
            raise SdkError("no refresh token: log in first")
        headers = {}
        if self.token_type == DPOP and self.device_key is not None:
            headers["DPoP"] = self.device_key.dpop_proof("POST",
                                                         self._url("/v1/sessions/refresh"))
        response = self._http.post("/v1/sessions/refresh", headers=headers,
                                   json={"refresh_token": self.refresh_token})
        raise_for_problem(response)
        return self._store(json_object(response))

    def logout(self, *, everywhere: bool = False) -> None:
        """End this session (or every session of the account) and forget its tokens."""
        self._authed("DELETE", "/v1/sessions" if everywhere else "/v1/sessions/current")
        self.access_token = self.refresh_token = self.session_id = None

    # -- the device ---------------------------------------------------------------------
    def bind_device(self, name: str, *, alg: Literal["ES256", "EdDSA"] = "ES256",
                    key_storage: Literal["software", "hardware"] = "software",
                    app_id: str = "dev.anfu.wallet", app_version: str = "1.0.0",
                    app_cert_sha256: str | None = None, os: str = "python",
                    rooted: bool = False, emulator: bool = False,
                    keystore: Path | None = None, passphrase: bytes | None = None,
                    attest: Attester | None = None) -> Json:
        """Generate a key pair here, register its public half, and bind this session to it:
        from now on every request carries a DPoP proof signed by the key. (A session that is
        already bound stays bound to its key; the new device is only registered.)

        ``attest`` is the phone's Keystore: given the key and the platform's attestation
        challenge, the Android Key Attestation chain (leaf first, base64 DER). Only an
        attested key is hardware-bound (level 3); without one the key counts as software,
        whatever ``key_storage`` says."""
        key = DeviceKey.generate(alg)
        body: Json = {
            "name": name, "public_jwk": dict(key.public.jwk), "app_id": app_id,
            "app_version": app_version, "os": os, "rooted": rooted, "emulator": emulator,
            "key_storage": key_storage,
            "app_cert_sha256": app_cert_sha256 or hashlib.sha256(app_id.encode()).hexdigest()}
        if attest is not None:
            challenge = self._authed("POST", "/v1/devices/attestation-challenge")
            body["attestation"] = {
                "format": "android-key", "challenge_id": challenge["challenge_id"],
                "certificate_chain": attest(key, challenge["challenge"].encode("ascii"))}
        # The registration itself is signed by the new key (proof of possession).
        device = self._authed("POST", "/v1/devices", body, proof_key=key)
        if device.get("session_bound"):
            self.device_key, self.device_id, self.token_type = key, device["device_id"], DPOP
        if keystore is not None:
            if passphrase is None:
                raise SdkError("a keystore needs a passphrase")
            self.save_keystore(keystore, passphrase)
        return device

    def request_certificate(self) -> Json:
        """Ask the platform CA for a certificate of this device's key (a PKCS#10 request
        signed by the key; needs a level-2 session). Call again before it expires to renew."""
        if self.device_key is None or self.device_id is None:
            raise SdkError("no bound device key: call bind_device() first")
        issued = self._authed("POST", "/v1/devices/current/certificate",
                              {"csr": device_csr_pem(self.device_key, self.device_id)})
        self.certificate_pem = issued["certificate"]
        return issued

    def login_with_certificate(self) -> Json:
        """Book 3.8.4: log in by signing a challenge with the certificate's key (one
        factor, possession; money moves then ask for a step-up)."""
        if self.certificate_pem is None or self.device_key is None or not self.device_id:
            raise SdkError("no device certificate: call request_certificate() first")
        if not self.user_id:
            raise SdkError("the device key signs over the user id: load the keystore")
        challenge = self._public("POST", "/v1/sessions/certificate",
                                 {"certificate": self.certificate_pem})
        signature = self.device_key.sign_device_challenge(
            challenge["nonce"], self.user_id, self.device_id, challenge["operation"])
        session = self._public(
            "POST", f"/v1/auth/challenges/{_seg(challenge['challenge_id'])}",
            {"method": "certificate", "device_id": self.device_id, "signature": signature})
        return self._store(session)

    def devices(self) -> list[Json]:
        return list(self._authed("GET", "/v1/devices")["devices"])

    def rename_device(self, device_id: str, name: str) -> Json:
        return self._authed("PATCH", f"/v1/devices/{_seg(device_id)}", {"name": name})

    def revoke_device(self, device_id: str) -> None:
        """A lost phone: its sessions end at once and its key is refused from now on."""
        self._authed("DELETE", f"/v1/devices/{_seg(device_id)}")

    def notices(self, after: int = 0) -> list[Json]:
        return list(self._authed("GET", "/v1/devices/current/notices",
                                 params={"after": after})["notices"])

    def sessions(self) -> list[Json]:
        return list(self._authed("GET", "/v1/sessions")["sessions"])

    def raise_assurance(self, level: int) -> Json:
        """Prove enough now for ``level`` (e.g. before a payment screen), answering the
        challenge with the device key or the code sources; returns ``{acr, amr}``."""
        return self._authed("POST", "/v1/sessions/current/step-up", {"level": level})

    def me(self) -> Json:
        return self._authed("GET", "/v1/me")

    # -- factors ------------------------------------------------------------------------
    def enroll_totp(self) -> Json:
        """``{secret, otpauth_uri, qr_png, qr_svg}``: show the QR code, then confirm."""
        return self._authed("POST", "/v1/factors/totp")

    def confirm_totp(self, code: str) -> list[str]:
        """Confirm with the app's first code; returns the 10 recovery codes (shown once)."""
        return list(self._authed("POST", "/v1/factors/totp/confirm",
                                 {"code": code})["recovery_codes"])

    def change_password(self, new_password: str, *, current_password: str) -> None:
        """Change the password (the current one proves it is the customer); every other
        session of the account ends and its other devices are told."""
        self._authed("PUT", "/v1/me/password", {"new_password": new_password,
                                                "current_password": current_password})

    def set_high_value_limit(self, currency: str, amount: int) -> Json:
        return self._authed("PUT", "/v1/me/limits",
                            {"currency": currency, "high_value_minor": amount})

    def reset_password(self, phone: str, new_password: str) -> None:
        """SMS code plus, when one is enrolled, a second factor; then every session ends."""
        start = self._public("POST", "/v1/password-resets", {"phone": phone})
        self._complete(start, password=None)
        self._public("POST", f"/v1/password-resets/{_seg(start['challenge_id'])}",
                     {"new_password": new_password}, expect_json=False)

    # -- challenges ---------------------------------------------------------------------
    def step_up(self, challenge: Json) -> Json:
        """Answer a ``step_up_required`` problem's challenge until it is satisfied."""
        return self._complete(challenge, password=None)

    def _complete(self, challenge: Json, *, password: str | None) -> Json:
        for _ in range(MAX_STEPS):
            answer = self._answer(challenge, password)
            path = f"/v1/auth/challenges/{_seg(challenge['challenge_id'])}"
            try:
                return self._public("POST", path, answer)
            except ApiError as exc:
                if exc.code != "step_up_required":
                    raise
                challenge = exc.body
        raise SdkError("the challenge was not satisfied after several answers")

    def _answer(self, challenge: Json, password: str | None) -> Json:
        methods = challenge.get("methods") or []
        if "device" in methods and self.device_key is not None and self.device_id:
            user_id = self.user_id
            if not user_id:
                raise SdkError("the device key signs over the user id, which this client"
                               " does not know: load a keystore saved after login")
            signature = self.device_key.sign_device_challenge(
                challenge["nonce"], user_id, self.device_id, challenge["operation"])
            return {"method": "device", "device_id": self.device_id, "signature": signature}
        if "password" in methods and (password is not None or self.password_source):
            source = self.password_source
            typed = password if password is not None else source(challenge) if source else ""
            return {"method": "password", "password": typed}
        if "totp" in methods and self.totp_code is not None:
            return {"method": "totp", "code": self.totp_code(challenge)}
        if "sms" in methods and self.sms_code is not None:
            self._public("POST", f"/v1/auth/challenges/{_seg(challenge['challenge_id'])}/sms",
                         {})
            return {"method": "sms", "code": self.sms_code(challenge)}
        raise SdkError(f"cannot answer the challenge: it accepts {methods}; give this client"
                       " a device key, an sms_code or totp_code source, or a password source")

    # -- the wire -----------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return self.base_url + path

    def _store(self, session: Json) -> Json:
        self.access_token = session["access_token"]
        self.refresh_token = session["refresh_token"]
        self.token_type = session.get("token_type", "Bearer")
        self.user_id = session.get("user_id", self.user_id)
        self.session_id = session.get("session_id", self.session_id)
        self.acr = session.get("acr", self.acr)
        return session

    def _public(self, method: str, path: str, body: Json, *,
                expect_json: bool = True) -> Json:
        response = self._http.request(method, path, json=body)
        raise_for_problem(response)
        return json_object(response) if expect_json else {}

    def auth_headers(self, method: str, path: str,
                     proof_key: DeviceKey | None = None) -> dict[str, str]:
        """The headers that authenticate one request: the token, and for a bound session a
        fresh DPoP proof of exactly this method and URL. ``proof_key`` also proves a key
        being registered (in DPoP when unbound, in Device-Key-Proof when bound)."""
        token = self.access_token
        if token is None:
            raise SdkError("not logged in: call login() first")
        url = self._url(path)
        if self.token_type == DPOP and self.device_key is not None:
            headers = {"Authorization": f"DPoP {token}",
                       "DPoP": self.device_key.dpop_proof(method, url, access_token=token)}
            if proof_key is not None and proof_key is not self.device_key:
                headers["Device-Key-Proof"] = proof_key.dpop_proof(method, url)
            return headers
        headers = {"Authorization": f"Bearer {token}"}
        if proof_key is not None:
            headers["DPoP"] = proof_key.dpop_proof(method, url)
        return headers

    def _authed(self, method: str, path: str, body: Json | None = None, *,
                key: str | None = None, params: Mapping[str, Any] | None = None,
                proof_key: DeviceKey | None = None) -> Json:
        stepped = refreshed = signed = False
        extra: dict[str, str] = {}
        while True:
            try:
                return self._send(method, path, body, key, params, proof_key, extra)
            except ApiError as exc:
                # Either refusal happened before the call ran, so sending it again (same
                # Idempotency-Key) is safe.
                if exc.code == "token_expired" and not refreshed and self.refresh_token:
                    refreshed = True
                    self._refresh_once()
                elif exc.code == "step_up_required" and not stepped:
                    stepped = True
                    self.step_up(exc.body)
                elif exc.code == "txn_signature_required" and not signed:
                    signed = True
                    extra["Anfu-Txn-Signature"] = answer_signature_required(
                        self.device_key, exc.body, self.approve_transaction)
                else:
                    raise

    def _refresh_once(self) -> None:
        token = self.access_token
        with self._refresh_lock:
            if self.access_token == token:  # nobody refreshed meanwhile
                self.refresh()

    def _send(self, method: str, path: str, body: Json | None, key: str | None,
              params: Mapping[str, Any] | None, proof_key: DeviceKey | None,
              extra: Mapping[str, str] | None = None) -> Json:
        headers = {**self.auth_headers(method, path, proof_key), **(extra or {})}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = self._http.request(method, path, json=body, headers=headers,
                                      params=dict(params) if params else None)
        raise_for_problem(response)
        if response.status_code == 204:
            return {}
        return json_object(response)


def _seg(value: str) -> str:
    return quote(value, safe="")
