"""The SM2 arithmetic, from OpenSSL 3's libcrypto when it has SM2, else from gmalglib.

Why two: OpenSSL is the reference implementation (constant-time signing, the same code the
``openssl`` tool runs) and, called through ctypes, releases the GIL, so verification scales
with cores. Some builds leave SM2 out (RHEL and Fedora configure OpenSSL with ``no-sm2``);
there gmalglib, a C extension shipped as wheels, takes over. Both pass the same known-answer
self-test before use. Callers see only ``SM2Backend``: points and scalars in, (r, s) out;
DER and range checks on signatures are done once, above this layer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from anfu.crypto._der import (
    INTEGER,
    fields,
    read_sm2_spki,
    read_uint,
    seq,
    sm2_pkcs8,
    sm2_spki,
    uint,
)

N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_log = logging.getLogger(__name__)

Verify = Callable[[int, int, bytes], bool]
Sign = Callable[[bytes], tuple[int, int]]


class SM2Backend(Protocol):
    name: str

    def public_point(self, scalar: bytes) -> bytes:
        """The uncompressed point (65 bytes) of a valid private scalar (32 bytes)."""

    def verifier(self, point: bytes, uid: bytes) -> Verify: ...

    def signer(self, scalar: bytes, point: bytes, uid: bytes) -> Sign: ...


# --- OpenSSL 3 libcrypto ---------------------------------------------------------------------

_VP = ctypes.c_void_p
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "OpenSSL_version_num": (ctypes.c_ulong, []),
    "ERR_clear_error": (None, []),
    "d2i_PUBKEY": (_VP, [_VP, ctypes.POINTER(_VP), ctypes.c_long]),
    "d2i_AutoPrivateKey": (_VP, [_VP, ctypes.POINTER(_VP), ctypes.c_long]),
    "i2d_PUBKEY": (ctypes.c_int, [_VP, ctypes.POINTER(_VP)]),
    "EVP_PKEY_is_a": (ctypes.c_int, [_VP, ctypes.c_char_p]),
    "EVP_PKEY_free": (None, [_VP]),
    "EVP_PKEY_CTX_new": (_VP, [_VP, _VP]),
    "EVP_PKEY_CTX_free": (None, [_VP]),
    "EVP_PKEY_CTX_set1_id": (ctypes.c_int, [_VP, ctypes.c_char_p, ctypes.c_int]),
    "EVP_MD_fetch": (_VP, [_VP, ctypes.c_char_p, ctypes.c_char_p]),
    "EVP_MD_CTX_new": (_VP, []),
    "EVP_MD_CTX_free": (None, [_VP]),
    "EVP_MD_CTX_copy_ex": (ctypes.c_int, [_VP, _VP]),
    "EVP_MD_CTX_set_pkey_ctx": (None, [_VP, _VP]),
    "EVP_DigestVerifyInit": (ctypes.c_int, [_VP, _VP, _VP, _VP, _VP]),
    "EVP_DigestSignInit": (ctypes.c_int, [_VP, _VP, _VP, _VP, _VP]),
    "EVP_DigestVerify": (
        ctypes.c_int,
        [_VP, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "EVP_DigestSign": (
        ctypes.c_int,
        [_VP, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t],
    ),
}


def _load_libcrypto() -> ctypes.CDLL:
    names = ["libcrypto.so.3", "libcrypto.3.dylib", ctypes.util.find_library("crypto")]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        for func, (restype, argtypes) in _PROTOTYPES.items():
            getattr(lib, func).restype = restype
            getattr(lib, func).argtypes = argtypes
        if lib.OpenSSL_version_num() >= 0x30000000:
            return lib
    raise OSError("no OpenSSL 3 libcrypto found")


class _EVPKey:
    """An EVP_PKEY and a pool of digest contexts initialised for it, to copy from.

    Initialising a context costs about a quarter of a verification (provider look-ups);
    copying one is cheap. A template is used by one thread at a time: it is popped from
    the pool, copied, and pushed back (list pop/append are atomic).
    """

    def __init__(self, lib: ctypes.CDLL, pkey: int, uid: bytes, md: int, *, sign: bool) -> None:
        self._lib, self._pkey, self._uid, self._md, self._sign = lib, pkey, uid, md, sign
        self._pool: list[tuple[int, int]] = []
        # Not at exit: freeing during interpreter shutdown gains nothing and risks ordering.
        weakref.finalize(self, _free_key, lib, pkey, self._pool).atexit = False

    def _template(self) -> tuple[int, int]:
        lib = self._lib
        mctx, pctx = lib.EVP_MD_CTX_new(), lib.EVP_PKEY_CTX_new(self._pkey, None)
        init = lib.EVP_DigestSignInit if self._sign else lib.EVP_DigestVerifyInit
        if not (mctx and pctx):
            _free_template(lib, (mctx, pctx))
            raise MemoryError("OpenSSL could not allocate a context")
        # The MD context does not take ownership of a pkey context set this way.
        lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
        ok = lib.EVP_PKEY_CTX_set1_id(pctx, self._uid, len(self._uid)) == 1
        if not (ok and init(mctx, None, self._md, None, self._pkey) == 1):
            lib.ERR_clear_error()
            _free_template(lib, (mctx, pctx))
            raise RuntimeError("OpenSSL refused to initialise SM2 with SM3")
        return mctx, pctx

    def context(self) -> int:
        """A fresh initialised context; the caller frees it with EVP_MD_CTX_free."""
        try:
            template = self._pool.pop()
        except IndexError:
            template = self._template()
        try:
            ctx = self._lib.EVP_MD_CTX_new()
            if not ctx or self._lib.EVP_MD_CTX_copy_ex(ctx, template[0]) != 1:
                self._lib.EVP_MD_CTX_free(ctx)
                raise RuntimeError("OpenSSL could not copy a digest context")
            return int(ctx)
        finally:
            self._pool.append(template)


def _free_template(lib: ctypes.CDLL, template: tuple[int, int]) -> None:
    lib.EVP_MD_CTX_free(template[0])
    lib.EVP_PKEY_CTX_free(template[1])


def _free_key(lib: ctypes.CDLL, pkey: int, pool: list[tuple[int, int]]) -> None:
    for template in pool:
        _free_template(lib, template)
    pool.clear()
    lib.EVP_PKEY_free(pkey)


class OpenSSLBackend:
    name = "openssl"

    def __init__(self) -> None:
        self._lib = _load_libcrypto()
        self._sm3 = self._lib.EVP_MD_fetch(None, b"SM3", None)
        if not self._sm3:
            raise OSError("this libcrypto has no SM3")

    def _pkey(self, der: bytes, *, private: bool) -> int:
        buf = ctypes.create_string_buffer(der, len(der))
        ptr = _VP(ctypes.addressof(buf))
        load = self._lib.d2i_AutoPrivateKey if private else self._lib.d2i_PUBKEY
        pkey = load(None, ctypes.byref(ptr), len(der))
        if not pkey or not self._lib.EVP_PKEY_is_a(pkey, b"SM2"):
            self._lib.ERR_clear_error()
            self._lib.EVP_PKEY_free(pkey)
            raise ValueError("libcrypto did not read the key as SM2 (built without SM2?)")
        return int(pkey)

    def public_point(self, scalar: bytes) -> bytes:
        pkey = self._pkey(sm2_pkcs8(scalar, None), private=True)
        try:
            size = self._lib.i2d_PUBKEY(pkey, None)
            buf = ctypes.create_string_buffer(max(size, 0))
            ptr = _VP(ctypes.addressof(buf))
            if size <= 0 or self._lib.i2d_PUBKEY(pkey, ctypes.byref(ptr)) != size:
                raise RuntimeError("OpenSSL could not encode the public key")
            return read_sm2_spki(buf.raw)
        finally:
            self._lib.EVP_PKEY_free(pkey)

    def verifier(self, point: bytes, uid: bytes) -> Verify:
        key = _EVPKey(
            self._lib, self._pkey(sm2_spki(point), private=False), uid, self._sm3, sign=False
        )
        lib = self._lib

        def verify(r: int, s: int, message: bytes) -> bool:
            sig = seq(uint(r), uint(s))
            ctx = key.context()
            try:
                ok = bool(lib.EVP_DigestVerify(ctx, sig, len(sig), message, len(message)) == 1)
            finally:
                lib.EVP_MD_CTX_free(ctx)
            if not ok:
                lib.ERR_clear_error()
            return ok

        return verify

    def signer(self, scalar: bytes, point: bytes, uid: bytes) -> Sign:
        key = _EVPKey(
            self._lib, self._pkey(sm2_pkcs8(scalar, point), private=True), uid, self._sm3, sign=True
        )
        lib = self._lib

        def sign(message: bytes) -> tuple[int, int]:
            out, size = ctypes.create_string_buffer(128), ctypes.c_size_t(128)
            ctx = key.context()
            try:
                ok = lib.EVP_DigestSign(ctx, out, ctypes.byref(size), message, len(message))
            finally:
                lib.EVP_MD_CTX_free(ctx)
            if ok != 1:
                lib.ERR_clear_error()
                raise RuntimeError("OpenSSL failed to make an SM2 signature")
            r, s = fields(out.raw[: size.value], INTEGER, INTEGER)
            return read_uint(r), read_uint(s)

        return sign


# --- gmalglib ----------------------------------------------------------------------------------


class GmalglibBackend:
    name = "gmalglib"

    def __init__(self) -> None:
        from gmalglib.sm2 import SM2  # optional: only needed where libcrypto lacks SM2

        self._sm2: Any = SM2

    def public_point(self, scalar: bytes) -> bytes:
        return bytes(self._sm2.get_pk(scalar))

    def verifier(self, point: bytes, uid: bytes) -> Verify:
        engine = self._sm2(pk=point, uid=uid)

        def verify(r: int, s: int, message: bytes) -> bool:
            return bool(engine.verify(message, r.to_bytes(32, "big") + s.to_bytes(32, "big")))

        return verify

    def signer(self, scalar: bytes, point: bytes, uid: bytes) -> Sign:
        engine = self._sm2(sk=scalar, uid=uid)

        def sign(message: bytes) -> tuple[int, int]:
            # gmalglib 0.5.9 does not retry when r or s comes out 0 (a `continue` inside
            # `do {} while (0)`); the chance is ~2^-256, but a bad signature must not leave.
            while True:
                raw = bytes(engine.sign(message))
                r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
                if 0 < r < N and 0 < s < N:
                    return r, s

        return sign


# --- selection ----------------------------------------------------------------------------------

# GB/T 32918.5-2017 Annex A (also GM/T 0003.5-2012 Annex A): signature on the recommended curve.
_KAT_SCALAR = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
_KAT_POINT = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
_KAT_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
_KAT_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
_KAT_MESSAGE = b"message digest"
_KAT_UID = b"1234567812345678"


def self_test(backend: SM2Backend) -> None:
    """Raise AssertionError unless ``backend`` reproduces the published example."""
    if backend.public_point(_KAT_SCALAR) != _KAT_POINT:
        raise AssertionError(f"{backend.name}: wrong public point for the example key")
    verify = backend.verifier(_KAT_POINT, _KAT_UID)
    if not verify(_KAT_R, _KAT_S, _KAT_MESSAGE) or verify(_KAT_R, _KAT_S, b"message digesu"):
        raise AssertionError(f"{backend.name}: fails the published signature example")
    r, s = backend.signer(_KAT_SCALAR, _KAT_POINT, _KAT_UID)(b"anfu")
    if not verify(r, s, b"anfu"):
        raise AssertionError(f"{backend.name}: cannot verify its own signature")


_lock = threading.Lock()
_chosen: list[SM2Backend] = []
_FACTORIES: tuple[type[OpenSSLBackend] | type[GmalglibBackend], ...] = (
    OpenSSLBackend,
    GmalglibBackend,
)


def _candidates(skipped: dict[str, str]) -> Iterator[SM2Backend]:
    for factory in _FACTORIES:
        try:
            backend: SM2Backend = factory()
            self_test(backend)
        except (OSError, ImportError, ValueError, RuntimeError, AssertionError) as exc:
            skipped[factory.name] = str(exc)
            continue
        yield backend


def available_backends() -> list[SM2Backend]:
    """Every backend that loads and passes the self-test, preferred first."""
    return list(_candidates({}))


def default_backend() -> SM2Backend:
    """The preferred working backend, chosen (and self-tested) on first use."""
    if not _chosen:
        with _lock:
            if not _chosen:
                skipped: dict[str, str] = {}
                backend = next(_candidates(skipped), None)
                if backend is None:
                    raise RuntimeError(f"no working SM2 implementation: {skipped}")
                if skipped:
                    _log.info("SM2 uses %s; skipped: %s", backend.name, skipped)
                _chosen.append(backend)
    return _chosen[0]
