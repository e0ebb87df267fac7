"""TLS options shared by the SDK's clients: which CA to trust (``verify``) and the client
certificate for the merchant zone's mutual TLS (``cert``)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TypeAlias

Verify: TypeAlias = bool | str | Path | ssl.SSLContext
# (certificate file, key file) or (certificate file, key file, key password)
ClientCert: TypeAlias = (tuple[str | Path, str | Path]
                         | tuple[str | Path, str | Path, str | bytes])


def client_verify(verify: Verify = True, cert: ClientCert | None = None
                  ) -> bool | ssl.SSLContext:
    """What to pass as httpx's ``verify=``: ``verify`` may be True (system CAs), False (no
    check: tests only), a CA bundle path (e.g. the platform root from ``/pki/ca/…``), or a
    ready context; ``cert`` adds a client certificate and key (PEM files)."""
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        if cert is None:
            return False
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif verify is True:
        if cert is None:
            return True
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.create_default_context(cafile=str(verify))
    ctx.minimum_version = max(ctx.minimum_version, ssl.TLSVersion.TLSv1_2)
    if cert is not None:
        password = cert[2] if len(cert) > 2 else None
        ctx.load_cert_chain(str(cert[0]), str(cert[1]), password=password)
    return ctx
