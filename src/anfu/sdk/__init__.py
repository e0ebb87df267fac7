"""Typed Python clients for anfu, on httpx.

- ``MerchantClient``: the merchant zone. Signs every request (ANFU-SIG-V1; ed25519,
  ecdsa-p256-sha256, rsa-sha256, sm2-sm3) and verifies the platform's signature on every
  response (``ResponseSignatureError``).
- ``verify_notification``: checks a notification the platform POSTed to your notify URL.
- ``WalletClient``: a customer's calls to the mobile zone.

Every platform error becomes ``ApiError`` with the platform's stable ``code``.
"""

from anfu.sdk.errors import (
    ApiError,
    NotificationSignatureError,
    ResponseSignatureError,
    SdkError,
)
from anfu.sdk.merchant import MerchantClient
from anfu.sdk.signatures import PlatformKeys, verify_notification
from anfu.sdk.wallet import WalletClient

__all__ = [
    "ApiError",
    "MerchantClient",
    "NotificationSignatureError",
    "PlatformKeys",
    "ResponseSignatureError",
    "SdkError",
    "WalletClient",
    "verify_notification",
]
