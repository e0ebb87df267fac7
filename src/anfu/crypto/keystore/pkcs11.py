"""The platform keystore on a PKCS#11 token (an HSM, or SoftHSM2 for development).

Keys are generated on the token: the private half is ``CKA_SENSITIVE`` and not
``CKA_EXTRACTABLE``, so it never leaves it; ``export_pkcs8`` refuses. Each key pair carries
``CKA_LABEL`` and ``CKA_ID`` = the key id. Signatures come back in the formats ``FileSigner``
gives: DER ECDSA (the token answers raw ``r || s``; we hash in software and use ``CKM_ECDSA``,
which every token has), raw 64-byte Ed25519 (``CKM_EDDSA``; a token without it refuses
ed25519 with ``AlgorithmNotSupported``), RSA PKCS#1 v1.5 over SHA-256.

Concurrency: a library initialised with ``C_Initialize(NULL)`` may assume one thread at a
time (SoftHSM2 then turns its own locking off), so every call into the module holds one
process-wide lock. PKCS#11 login is per process and closing a logged-in session logs out
every session, so the stores of one process share one session per token, closed by the last
user (``close``), which also finalises the module. A process forked after the module was
opened re-initialises it before first use (``anfu run --workers N`` builds, closes, then
forks). Object handles are looked up once per session; public keys are parsed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11err

from anfu.crypto.keystore import AlgorithmNotSupported
from anfu.crypto.keystore.files import check_key_id
from anfu.crypto.keystore.platform import (
    PLATFORM_ALGS,
    KeyNotExportable,
    KeyNotFound,
    PlatformKeyError,
)

T = TypeVar("T")

# DER of the curve OIDs as CKA_EC_PARAMS carries them (namedCurve).
_P256 = bytes.fromhex("06082a8648ce3d030107")   # 1.2.840.10045.3.1.7
_P384 = bytes.fromhex("06052b81040022")         # 1.3.132.0.34
_ED25519 = bytes.fromhex("06032b6570")          # 1.3.101.112 (RFC 8410)
_ED25519_NAME = b"\x13\x0cedwards25519"         # PrintableString form, PKCS#11 3.0
RSA_BITS = 3072

_EC_PARAMS = {"ecdsa-p256-sha256": _P256, "ecdsa-p384-sha384": _P384}
_CURVES: dict[bytes, tuple[str, ec.EllipticCurve]] = {
    _P256: ("ecdsa-p256-sha256", ec.SECP256R1()),
    _P384: ("ecdsa-p384-sha384", ec.SECP384R1()),
}
# What each algorithm needs from the token: (key generation, signing) mechanisms.
_NEEDS = {
    "ecdsa-p256-sha256": (Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA),
    "ecdsa-p384-sha384": (Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA),
    "ed25519": (Mechanism.EC_EDWARDS_KEY_PAIR_GEN, Mechanism.EDDSA),
    "rsa-sha256": (Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.SHA256_RSA_PKCS),
}


def _octet_string(data: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give it raw)."""
    if len(data) >= 2 and data[0] == 0x04:
        length, offset = data[1], 2
        if length & 0x80:
            n = length & 0x7F
            length, offset = int.from_bytes(data[2:2 + n], "big"), 2 + n
        if offset + length == len(data):
            return data[offset:]
    return data


# Every call into a PKCS#11 module holds this lock (see the module notes).
_LOCK = threading.RLock()


@dataclass
class _OpenToken:
    """The one logged-in session of this process on a token, shared by every store on it:
    PKCS#11 login is per application, and closing a logged-in session logs them all out."""
    session: Any
    mechanisms: frozenset[Mechanism]
    users: int
    generation: int
    pin_sha256: bytes  # a store joining the session must know the same PIN


_TOKENS: dict[tuple[str, str], _OpenToken] = {}
_LIBS: set[str] = set()
_PID = [os.getpid()]
_GENERATION = itertools.count(1)


def _after_fork() -> None:
    """In a forked child the parent's sessions and initialisation are not ours: forget
    them and initialise each module again. Call with _LOCK held."""
    if _PID[0] == os.getpid():
        return
    _PID[0] = os.getpid()
    _TOKENS.clear()
    for path in _LIBS:
        lib = pkcs11.lib(path)
        try:
            lib.reinitialize()
        except p11err.PKCS11Error:
            lib.initialize()


def _open_token(path: str, label: str, pin: str) -> _OpenToken:
    """The shared session on token ``label`` of module ``path``, one more user counted.
    Call with _LOCK held."""
    _after_fork()
    pin_sha256 = hashlib.sha256(pin.encode()).digest()
    entry = _TOKENS.get((path, label))
    if entry is not None:
        if not hmac.compare_digest(entry.pin_sha256, pin_sha256):
            raise p11err.PinIncorrect()
        entry.users += 1
        return entry
    try:
        lib = pkcs11.lib(path)
        _LIBS.add(path)
        if not lib.initialized:
            lib.initialize()
    except (p11err.PKCS11Error, OSError) as exc:
        raise PlatformKeyError(f"cannot load PKCS#11 module {path} (ANFU_PKCS11_MODULE):"
                               f" {exc}") from exc
    try:
        token = lib.get_token(token_label=label)
        session = token.open(rw=True, user_pin=pin)
        mechanisms = frozenset(token.slot.get_mechanisms())
    except BaseException:
        _finalize_if_unused(path)
        raise
    entry = _OpenToken(session, mechanisms, 1, next(_GENERATION), pin_sha256)
    _TOKENS[(path, label)] = entry
    return entry


def _close_token(path: str, label: str, entry: _OpenToken) -> None:
    """One user fewer; the last one logs out, closes the session and (if no other token of
    the module is open) finalises the module. Call with _LOCK held."""
    if _TOKENS.get((path, label)) is not entry:
        return  # opened before a fork, or already closed
    entry.users -= 1
    if entry.users > 0:
        return
    del _TOKENS[(path, label)]
    with contextlib.suppress(p11err.PKCS11Error):
        entry.session.close()
    _finalize_if_unused(path)


def _finalize_if_unused(path: str) -> None:
    if not any(p == path for p, _ in _TOKENS):
        with contextlib.suppress(p11err.PKCS11Error):
            pkcs11.lib(path).finalize()


class Pkcs11Signer:
    """A key pair on the token. The public half is read and parsed once."""

    backend = "pkcs11"

    def __init__(self, store: Pkcs11KeyStore, key_id: str, alg: str,
                 public_key: CertificateIssuerPublicKeyTypes) -> None:
        self._store = store
        self._key_id = key_id
        self._alg = alg
        self._public = public_key
        self._sign: Callable[[bytes], bytes] = self._make_sign(alg)

    def _make_sign(self, alg: str) -> Callable[[bytes], bytes]:
        sign = self._store._sign  # the store owns the session and its lock
        key_id = self._key_id
        if alg == "ed25519":
            return lambda data: sign(key_id, Mechanism.EDDSA, data)
        if alg == "rsa-sha256":
            return lambda data: sign(key_id, Mechanism.SHA256_RSA_PKCS, data)
        digest = hashlib.sha384 if alg == "ecdsa-p384-sha384" else hashlib.sha256

        def ecdsa(data: bytes) -> bytes:
            raw = sign(key_id, Mechanism.ECDSA, digest(data).digest())
            half = len(raw) // 2
            return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                        int.from_bytes(raw[half:], "big"))

        return ecdsa

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def alg(self) -> str:
        return self._alg

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)

    def private_key(self) -> CertificateIssuerPrivateKeyTypes | None:
        return None

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self._key_id!r}, {self._alg!r})"


class Pkcs11KeyStore:
    """Platform keys on the token labelled ``token_label`` of the PKCS#11 module at
    ``module_path``, logged in with the user ``pin``. The module is opened on first use."""

    backend = "pkcs11"

    def __init__(self, module_path: str, token_label: str, pin: str) -> None:
        if not pin:
            raise PlatformKeyError("the PKCS#11 keystore needs the token's user PIN"
                                   " (ANFU_PKCS11_PIN)")
        self._module_path = module_path
        self._token_label = token_label
        self._pin = pin
        self._open_token: _OpenToken | None = None
        self._private: dict[str, Any] = {}       # key id -> private key object (this session)
        self._generation = 0
        self._signers: dict[str, Pkcs11Signer] = {}

    def __repr__(self) -> str:
        return f"Pkcs11KeyStore({self._module_path!r}, token={self._token_label!r})"

    # -- session ---------------------------------------------------------------------------
    def _open(self) -> _OpenToken:
        """This process's session on the token, opened on first use and again after a
        fork. Call with _LOCK held."""
        _after_fork()
        entry = self._open_token
        if entry is not None and _TOKENS.get((self._module_path, self._token_label)) is entry:
            return entry
        try:
            entry = _open_token(self._module_path, self._token_label, self._pin)
        except p11err.NoSuchToken:
            raise PlatformKeyError(
                f"no PKCS#11 token labelled {self._token_label!r} in {self._module_path}"
                " (ANFU_PKCS11_TOKEN; for SoftHSM2 see SOFTHSM2_CONF and `anfu keys"
                " softhsm-init`)") from None
        except (p11err.PinIncorrect, p11err.PinLenRange):
            raise PlatformKeyError(f"the PKCS#11 token {self._token_label!r} refused the PIN"
                                   " (ANFU_PKCS11_PIN)") from None
        except (p11err.PKCS11Error, OSError) as exc:
            raise PlatformKeyError(f"cannot open PKCS#11 token {self._token_label!r} in"
                                   f" {self._module_path}: {type(exc).__name__} {exc}"
                                   ) from exc
        self._open_token = entry
        if entry.generation != self._generation:  # object handles belong to a session
            self._private, self._generation = {}, entry.generation
        return entry

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        with _LOCK:
            session = self._open().session
            try:
                return fn(session)
            except p11err.PKCS11Error as exc:
                raise PlatformKeyError(f"PKCS#11 {what} failed: {type(exc).__name__}"
                                       f" {exc}") from exc

    def close(self) -> None:
        """Give up this store's use of the session: the last user of the token logs out
        and the module is finalised (before a fork, and at shutdown)."""
        with _LOCK:
            entry, self._open_token, self._private = self._open_token, None, {}
            if entry is not None:
                _close_token(self._module_path, self._token_label, entry)

    def supports(self, alg: str) -> bool:
        if alg not in _NEEDS:
            return False
        with _LOCK:
            mechanisms = self._open().mechanisms
        return all(m in mechanisms for m in _NEEDS[alg])

    # -- keys ------------------------------------------------------------------------------
    def _find(self, session: Any, key_id: str, cls: ObjectClass) -> Any:
        found = list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: key_id,
                                          Attribute.ID: key_id.encode()}))
        if not found:
            raise KeyNotFound(f"no platform key {key_id!r} on PKCS#11 token"
                              f" {self._token_label!r}")
        if len(found) > 1:
            raise PlatformKeyError(f"{len(found)} objects named {key_id!r} on the token")
        return found[0]

    def exists(self, key_id: str) -> bool:
        check_key_id(key_id)
        return self._call("search", lambda s: any(True for _ in s.get_objects(
            {Attribute.LABEL: key_id, Attribute.ID: key_id.encode()})))

    def create(self, key_id: str, alg: str) -> Pkcs11Signer:
        check_key_id(key_id)
        if alg not in PLATFORM_ALGS:
            raise PlatformKeyError(f"unknown platform key algorithm {alg!r}; one of"
                                   f" {', '.join(PLATFORM_ALGS)}")
        if not self.supports(alg):
            raise AlgorithmNotSupported(
                f"PKCS#11 token {self._token_label!r} ({self._module_path}) cannot make"
                f" {alg} keys: it lacks {' or '.join(m.name for m in _NEEDS[alg])}")
        if self.exists(key_id):
            raise PlatformKeyError(f"a platform key {key_id!r} already exists")
        private_template = {Attribute.TOKEN: True, Attribute.PRIVATE: True,
                            Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                            Attribute.SIGN: True, Attribute.DECRYPT: False,
                            Attribute.DERIVE: False, Attribute.UNWRAP: False}
        public_template = {Attribute.TOKEN: True, Attribute.VERIFY: True,
                           Attribute.ENCRYPT: False, Attribute.WRAP: False,
                           Attribute.DERIVE: False}
        named = {"id": key_id.encode(), "label": key_id, "store": True,
                 "public_template": public_template, "private_template": private_template}

        def generate(session: Any) -> None:
            if alg == "rsa-sha256":
                session.generate_keypair(KeyType.RSA, RSA_BITS,
                                         mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN, **named)
                return
            if alg == "ed25519":
                key_type, params, mech = (KeyType.EC_EDWARDS, _ED25519,
                                          Mechanism.EC_EDWARDS_KEY_PAIR_GEN)
            else:
                key_type, params, mech = KeyType.EC, _EC_PARAMS[alg], Mechanism.EC_KEY_PAIR_GEN
            domain = session.create_domain_parameters(
                key_type, {Attribute.EC_PARAMS: params}, local=True)
            domain.generate_keypair(mechanism=mech, **named)

        self._call("key generation", generate)
        return self.load(key_id)

    def load(self, key_id: str) -> Pkcs11Signer:
        check_key_id(key_id)
        with _LOCK:
            signer = self._signers.get(key_id)
            if signer is not None:
                return signer
            alg, public = self._call("key lookup", lambda s: self._read_public(s, key_id))
            signer = Pkcs11Signer(self, key_id, alg, public)
            self._signers[key_id] = signer
            return signer

    def _read_public(self, session: Any, key_id: str
                     ) -> tuple[str, CertificateIssuerPublicKeyTypes]:
        self._find(session, key_id, ObjectClass.PRIVATE_KEY)  # the signing half must exist
        pub = self._find(session, key_id, ObjectClass.PUBLIC_KEY)
        key_type = pub[Attribute.KEY_TYPE]
        if key_type == KeyType.RSA:
            numbers = rsa.RSAPublicNumbers(int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                                           int.from_bytes(pub[Attribute.MODULUS], "big"))
            return "rsa-sha256", numbers.public_key()
        params, point = bytes(pub[Attribute.EC_PARAMS]), _octet_string(
            bytes(pub[Attribute.EC_POINT]))
        try:
            if key_type == KeyType.EC_EDWARDS and params in (_ED25519, _ED25519_NAME):
                return "ed25519", ed25519.Ed25519PublicKey.from_public_bytes(point)
            if key_type == KeyType.EC and params in _CURVES:
                alg, curve = _CURVES[params]
                return alg, ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        except ValueError as exc:
            raise PlatformKeyError(f"platform key {key_id!r}: the token's public key cannot"
                                   f" be read: {exc}") from exc
        raise PlatformKeyError(f"platform key {key_id!r} on the token is of a kind anfu does"
                               f" not use ({key_type!r})")

    def _sign(self, key_id: str, mechanism: Mechanism, data: bytes) -> bytes:
        def sign(session: Any) -> bytes:
            key = self._private.get(key_id)
            if key is None:
                key = self._find(session, key_id, ObjectClass.PRIVATE_KEY)
                self._private[key_id] = key
            return bytes(key.sign(data, mechanism=mechanism))

        return self._call("signing", sign)

    def delete(self, key_id: str) -> None:
        check_key_id(key_id)

        def destroy(session: Any) -> None:
            objects = list(session.get_objects({Attribute.LABEL: key_id,
                                                Attribute.ID: key_id.encode()}))
            if not objects:
                raise KeyNotFound(f"no platform key {key_id!r} on PKCS#11 token"
                                  f" {self._token_label!r}")
            for obj in objects:
                obj.destroy()

        with _LOCK:
            self._call("delete", destroy)
            self._private.pop(key_id, None)
            self._signers.pop(key_id, None)

    def export_pkcs8(self, key_id: str, passphrase: bytes) -> bytes:
        raise KeyNotExportable(f"platform key {key_id!r} lives on PKCS#11 token"
                               f" {self._token_label!r} and cannot leave it (generated there,"
                               " sensitive, not extractable)")
