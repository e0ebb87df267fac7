"""Android Key Attestation checks, on chains the test Keystore makes (root → intermediate →
leaf with the KeyDescription extension)."""

from __future__ import annotations

import base64
import datetime as dt
import time

import pytest

from anfu.crypto.attestation import (
    AttestationInvalid,
    AttestationRoot,
    load_roots,
    spki_of_jwk,
    verify_android_key,
)
from anfu.crypto.jose import DeviceKey
from tests.softattest import SOFTWARE, STRONGBOX, SoftKeystore

CHALLENGE = b"server-challenge-0123456789"


@pytest.fixture(scope="module")
def keystore() -> SoftKeystore:
    return SoftKeystore()


@pytest.fixture(scope="module")
def roots(keystore: SoftKeystore, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[AttestationRoot, ...]:
    return load_roots([keystore.write_root(tmp_path_factory.mktemp("roots") / "root.pem")])


def check(chain: list[str], key: DeviceKey, roots: tuple[AttestationRoot, ...],
          challenge: bytes = CHALLENGE) -> str:
    return verify_android_key([base64.b64decode(c) for c in chain], challenge=challenge,
                              public_key_spki=spki_of_jwk(key.public.jwk), roots=roots,
                              now=time.time()).security_level


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_a_good_chain_is_a_hardware_key(keystore: SoftKeystore, roots: tuple[AttestationRoot, ...],
                                        alg: str) -> None:
    key = DeviceKey.generate(alg)  # type: ignore[arg-type]
    assert check(keystore.attest(key, CHALLENGE), key, roots) == "trusted_environment"
    assert check(keystore.attest(key, CHALLENGE, level=STRONGBOX), key, roots) == "strongbox"


def refused(chain: list[str], key: DeviceKey, roots: tuple[AttestationRoot, ...],
            challenge: bytes = CHALLENGE) -> str:
    with pytest.raises(AttestationInvalid) as caught:
        check(chain, key, roots, challenge)
    return caught.value.check


def test_each_failed_check_is_named(keystore: SoftKeystore,
                                    roots: tuple[AttestationRoot, ...]) -> None:
    key, other = DeviceKey.generate("ES256"), DeviceKey.generate("ES256")
    assert refused(keystore.attest(key, b"another challenge"), key, roots) == "challenge"
    assert refused(SoftKeystore().attest(key, CHALLENGE), key, roots) == "root"
    assert refused(keystore.attest(key, CHALLENGE, certified_key=other), key, roots) == "key"
    assert refused(keystore.attest(key, CHALLENGE, level=SOFTWARE), key,
                   roots) == "security_level"
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert refused(keystore.attest(key, CHALLENGE, not_after=expired), key, roots) == "expired"
    leaf, intermediate, root = keystore.attest(key, CHALLENGE)
    assert refused([leaf, root], key, roots) == "chain"  # the intermediate left out
    assert refused([leaf, intermediate, root], key, ()) == "root"
    assert refused(["bm90IGEgY2VydGlmaWNhdGU="], key, roots) == "malformed"


def test_an_intermediate_issued_by_a_root_needs_no_root_in_the_chain(
        keystore: SoftKeystore, roots: tuple[AttestationRoot, ...]) -> None:
    key = DeviceKey.generate("ES256")
    leaf, intermediate, _ = keystore.attest(key, CHALLENGE)
    assert check([leaf, intermediate], key, roots) == "trusted_environment"
