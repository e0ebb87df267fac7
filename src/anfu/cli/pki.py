"""``anfu pki``: the platform CA. Set it up, look at it, keep its root key offline, rotate
the issuing CA, make the TLS server certificate."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

pki_app = typer.Typer(help="The platform CA: root, issuing CA, OCSP signer, offline root.",
                      no_args_is_help=True)

Passphrase = Annotated[str, typer.Option(
    envvar="ANFU_PKI_EXPORT_PASSPHRASE", prompt=True, hide_input=True,
    help="encrypts (or opens) the exported root key; at least 12 characters")]


def _run(fn: Callable[[Any], Any]) -> Any:
    from anfu.cli.main import _platform
    from anfu.crypto.keystore.platform import PlatformKeyError
    from anfu.errors import AnfuError

    platform = _platform()
    try:
        return fn(platform)
    except (AnfuError, PlatformKeyError) as exc:
        code = getattr(exc, "code", "platform_key_error")
        typer.echo(json.dumps({"error": code, "detail": str(exc)}), err=True)
        raise typer.Exit(1) from exc
    finally:
        platform.close()


def _cas(platform: Any) -> list[dict[str, Any]]:
    from anfu.pki import service

    out = []
    for ca in service.authority(platform).cas():
        row = ca.public()
        row.pop("certificate")
        row["key_id"] = ca.key_id
        row["key_present"] = service.platform_keystore(platform).exists(ca.key_id)
        out.append(row)
    return out


@pki_app.command("init")
def init() -> None:
    """Create the root CA (ECDSA P-384, 10 years), the issuing CA (P-256, 5 years) and the
    delegated OCSP signer (7 days, renewed automatically). Refuses if a CA exists."""
    from anfu.pki import service

    def job(platform: Any) -> None:
        service.authority(platform).initialise(now=platform.clock(), exist_ok=False)
        typer.echo(json.dumps({"cas": _cas(platform)}, indent=2))

    _run(job)


@pki_app.command("cas")
def cas() -> None:
    """The CA and OCSP signer certificates, and whether each private key is present."""
    _run(lambda platform: typer.echo(json.dumps({"cas": _cas(platform)}, indent=2)))


@pki_app.command("export-root")
def export_root(out: Annotated[Path, typer.Option(help="file to write (mode 0600)")],
                passphrase: Passphrase) -> None:
    """Write the root key (encrypted PKCS#8) and the root certificate to one PEM file, for
    offline storage. Then `anfu pki remove-root-key`."""
    from anfu.pki import service

    if len(passphrase) < 12:
        typer.echo(json.dumps({"error": "passphrase_too_short",
                               "detail": "use at least 12 characters"}), err=True)
        raise typer.Exit(2)

    def job(platform: Any) -> None:
        key_pem, cert_pem = service.authority(platform).export_root(passphrase.encode())
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem + cert_pem.encode())
        typer.echo(json.dumps({"exported": str(out)}))

    try:
        _run(job)
    except FileExistsError:
        typer.echo(json.dumps({"error": "file_exists", "detail": f"{out} exists"}), err=True)
        raise typer.Exit(1) from None


@pki_app.command("remove-root-key")
def remove_root_key(
        exported: Annotated[Path, typer.Option(help="the file export-root wrote: checked"
                                               " to hold the root key before deleting")],
        passphrase: Passphrase) -> None:
    """Delete the root CA's private key from the platform (offline root). Issuing, CRLs and
    OCSP go on; only a new issuing CA needs the key back (`rotate-issuing --root-key`)."""
    from anfu.pki import service

    def job(platform: Any) -> None:
        auth = service.authority(platform)
        root = [c for c in auth.cas() if c.kind == "root" and c.status == "active"][-1]
        # Refuse unless the export really opens with this passphrase and holds this key.
        signer = service.load_root_key(exported.read_bytes(), passphrase.encode(), root.key_id)
        from anfu.crypto import x509 as X

        if X.spki_der(signer.public_key()) != X.spki_der(
                X.load_cert(root.cert_pem).public_key()):
            typer.echo(json.dumps({"error": "root_key_mismatch",
                                   "detail": "that file does not hold the root key"}),
                       err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps({"removed": auth.remove_root_key()}))

    _run(job)


@pki_app.command("rotate-issuing")
def rotate_issuing(
        root_key: Annotated[Path | None, typer.Option(help="the exported root key (needed"
                                                      " when the root is offline)")] = None,
        passphrase: Annotated[str | None, typer.Option(
            envvar="ANFU_PKI_EXPORT_PASSPHRASE", hide_input=True)] = None) -> None:
    """A new issuing CA and OCSP signer; the old issuing CA issues no more but keeps its
    CRL and OCSP answers until its certificates expire."""
    from anfu.pki import service

    def job(platform: Any) -> None:
        auth = service.authority(platform)
        signer = None
        if root_key is not None:
            secret = passphrase or typer.prompt("Passphrase", hide_input=True)
            root = [c for c in auth.cas() if c.kind == "root" and c.status == "active"][-1]
            signer = service.load_root_key(root_key.read_bytes(), secret.encode(),
                                           root.key_id)
        fresh = auth.rotate_issuing(root_key=signer, now=platform.clock())
        typer.echo(json.dumps({"issuing": fresh.ca_id, "cas": _cas(platform)}, indent=2))

    _run(job)


@pki_app.command("server-cert")
def server_cert() -> None:
    """Make (or renew) the TLS server certificate for ANFU_TLS_HOSTNAMES under
    ANFU_HOME/tls; prints the file paths."""
    from anfu.pki import service

    def job(platform: Any) -> None:
        creds = service.ensure_server_certificate(platform)
        typer.echo(json.dumps({"cert_chain_pem": str(creds.cert_chain_pem),
                               "key_pem": str(creds.key_pem),
                               "client_ca_pem": str(creds.client_ca_pem)}))

    _run(job)
