"""RFC 9474 blind RSA: the RFC's Appendix A vectors, round trips in every variant, refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from anfu.crypto import InvalidSignature, KeyFormatError
from anfu.crypto import blind_rsa as br

DOC = json.loads((Path(__file__).parent / "vectors" / "rfc9474_blind_rsa.json").read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]


def h(v: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(v[name])


def keys_of(v: dict[str, Any]) -> tuple[br.BlindRsaPublicKey, br.BlindRsaPrivateKey]:
    private = br.BlindRsaPrivateKey.from_numbers(
        int(v["p"], 16), int(v["q"], 16), int(v["e"], 16), int(v["d"], 16)
    )
    return private.public_key(), private


@pytest.fixture(scope="module")
def signer() -> br.BlindRsaPrivateKey:
    return br.BlindRsaPrivateKey.generate(2048)


def test_all_four_appendix_a_vectors_are_present() -> None:
    assert [v["name"] for v in VECTORS] == list(br.VARIANTS)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_rfc9474_vector(v: dict[str, Any]) -> None:
    public, private = keys_of(v)
    assert public.n == int(v["n"], 16)
    variant = br.VARIANTS[v["name"]]
    prefix = h(v, "msg_prefix") or None
    assert br.prepare(variant, h(v, "msg"), msg_prefix=prefix) == h(v, "random_msg")
    # As published, encoded_msg is over msg with the listed salt (see the JSON's note).
    salt = h(v, "salt")
    used = dataclasses.replace(variant, salt_len=len(salt))
    assert br._emsa_pss_encode(h(v, "msg"), public.n.bit_length() - 1, salt) == h(v, "encoded_msg")
    inv = int(v["inv"], 16)
    result = br.blind(public, used, h(v, "msg"), salt=salt, r=pow(inv, -1, public.n))
    assert result.blinded_msg == h(v, "blinded_msg")
    assert result.inv == inv
    blind_sig = br.blind_sign(private, result.blinded_msg)
    assert blind_sig == h(v, "blind_sig")
    sig = br.finalize(public, used, h(v, "msg"), blind_sig, result.inv)
    assert sig == h(v, "sig")
    br.verify(public, used, h(v, "msg"), sig)
    with pytest.raises(InvalidSignature):
        br.verify(public, used, h(v, "msg") + b"x", sig)


@pytest.mark.parametrize("variant", list(br.VARIANTS.values()), ids=lambda v: v.name)
def test_round_trip_in_every_variant(variant: br.Variant, signer: br.BlindRsaPrivateKey) -> None:
    public = br.BlindRsaPublicKey.from_pem(signer.public_key().public_pem())
    msg = b"anfu coupon 42"
    prepared = br.prepare(variant, msg)
    assert len(prepared) == len(msg) + (32 if variant.randomized else 0)
    blinded = br.blind(public, variant, prepared)
    sig = br.finalize(public, variant, prepared, br.blind_sign(signer, blinded.blinded_msg),
                      blinded.inv)
    br.verify(public, variant, prepared, sig)
    # An ordinary RSASSA-PSS verifier accepts it too.
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=variant.salt_len)
    public._key.verify(sig, prepared, pss, hashes.SHA384())
    with pytest.raises(InvalidSignature):
        br.verify(public, variant, prepared[:-1], sig)
    with pytest.raises(InvalidSignature):
        br.verify(public, variant, prepared, bytes([sig[0] ^ 1]) + sig[1:])


def test_blinding_hides_the_message(signer: br.BlindRsaPrivateKey) -> None:
    public, variant = signer.public_key(), br.RSABSSA_SHA384_PSS_DETERMINISTIC
    one = br.blind(public, variant, b"same")
    two = br.blind(public, variant, b"same")
    assert one.blinded_msg != two.blinded_msg


def test_randomized_prepare_differs_each_time() -> None:
    variant = br.RSABSSA_SHA384_PSS_RANDOMIZED
    assert br.prepare(variant, b"m") != br.prepare(variant, b"m")


def test_a_cheating_signer_is_caught(signer: br.BlindRsaPrivateKey) -> None:
    public, variant = signer.public_key(), br.RSABSSA_SHA384_PSS_RANDOMIZED
    prepared = br.prepare(variant, b"m")
    blinded = br.blind(public, variant, prepared)
    other = br.blind(public, variant, br.prepare(variant, b"other"))
    wrong = br.blind_sign(signer, other.blinded_msg)
    with pytest.raises(InvalidSignature):
        br.finalize(public, variant, prepared, wrong, blinded.inv)
    with pytest.raises(InvalidSignature):
        br.finalize(public, variant, prepared, b"\xff" * public.k_len, blinded.inv)


def test_refusals_name_the_check(signer: br.BlindRsaPrivateKey) -> None:
    public, variant = signer.public_key(), br.RSABSSA_SHA384_PSS_RANDOMIZED
    with pytest.raises(br.BlindRsaError, match="unexpected input size"):
        br.blind_sign(signer, b"\x01" * (public.k_len - 1))
    with pytest.raises(br.BlindRsaError, match="out of range"):
        br.blind_sign(signer, b"\xff" * public.k_len)
    blinded = br.blind(public, variant, b"m")
    with pytest.raises(br.BlindRsaError, match="unexpected input size"):
        br.finalize(public, variant, b"m", b"\x00" * 10, blinded.inv)
    with pytest.raises(br.BlindRsaError, match="salt"):
        br.blind(public, variant, b"m", salt=b"short")
    with pytest.raises(br.BlindRsaError, match="invalid blind"):
        br.blind(public, variant, b"m", r=public.n)
    with pytest.raises(br.BlindRsaError, match="prefix"):
        br.prepare(variant, b"m", msg_prefix=b"x")
    with pytest.raises(br.BlindRsaError, match="no message prefix"):
        br.prepare(br.RSABSSA_SHA384_PSS_DETERMINISTIC, b"m", msg_prefix=b"\x00" * 32)
    with pytest.raises(InvalidSignature, match="wrong length"):
        br.verify(public, variant, b"m", b"\x00")


def test_keys_load_and_refuse() -> None:
    with pytest.raises(KeyFormatError, match="2048 to 8192"):
        br.BlindRsaPrivateKey.generate(1024)
    with pytest.raises(KeyFormatError):
        br.BlindRsaPublicKey.from_pem("not a pem")
    with pytest.raises(KeyFormatError):
        br.BlindRsaPrivateKey.from_pem("not a pem")


def test_private_key_pem_round_trip(signer: br.BlindRsaPrivateKey) -> None:
    again = br.BlindRsaPrivateKey.from_pem(signer.private_pem(b"pw"), b"pw")
    assert again.public_key() == signer.public_key()
    assert "BlindRsaPrivateKey 2048 bits" in repr(again)
    variant = br.RSABSSA_SHA384_PSSZERO_DETERMINISTIC
    blinded = br.blind(again.public_key(), variant, b"m")
    sig = br.finalize(signer.public_key(), variant, b"m",
                      br.blind_sign(again, blinded.blinded_msg), blinded.inv)
    br.verify(signer.public_key(), variant, b"m", sig)


def test_a_blind_sharing_a_factor_with_n_is_refused() -> None:
    public, _ = keys_of(VECTORS[0])
    with pytest.raises(br.BlindRsaError, match="invalid blind"):
        br.blind(public, br.RSABSSA_SHA384_PSS_RANDOMIZED, b"m", r=int(VECTORS[0]["p"], 16))
