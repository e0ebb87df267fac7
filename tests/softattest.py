"""The tests' phone Keystore: the platform's sandbox Keystore (``anfu.crypto.sandbox_keystore``),
one per test process, whose root every test platform trusts through ANFU_ATTESTATION_ROOTS."""

from __future__ import annotations

from anfu.crypto.sandbox_keystore import (
    SOFTWARE,
    STRONGBOX,
    TRUSTED_ENVIRONMENT,
    SandboxKeystore,
    key_description,
)

SoftKeystore = SandboxKeystore
__all__ = ["SOFTWARE", "STRONGBOX", "TRUSTED_ENVIRONMENT", "SoftKeystore", "key_description",
           "shared_keystore"]

_SHARED: SandboxKeystore | None = None


def shared_keystore() -> SandboxKeystore:
    """The one test keystore of this test process, whose root every test platform trusts."""
    global _SHARED
    if _SHARED is None:
        _SHARED = SandboxKeystore(name="anfu test attestation")
    return _SHARED
