"""Where private keys live.

``device``: the SDK's encrypted file for one phone's key. The platform's own keys (CA, OCSP,
receipt, log and response signing) live behind one interface with two back ends: encrypted
PKCS#8 files and PKCS#11 tokens.
"""

from anfu.crypto.keystore.device import (
    Argon2Params,
    KeystoreError,
    load_device_keystore,
    save_device_keystore,
)

__all__ = ["Argon2Params", "KeystoreError", "load_device_keystore", "save_device_keystore"]
