"""``anfu keys``: the platform's own signing keys: list the key rings, rotate one (the
rotation is written to the transparency log), prepare a SoftHSM2 token for development."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from anfu.bootstrap import Platform

keys_app = typer.Typer(help="Platform signing keys: key rings, rotation, PKCS#11 tokens.",
                       no_args_is_help=True)

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _open() -> Platform:
    from anfu.cli.main import _platform
    from anfu.crypto.keystore import PlatformKeyError

    try:
        return _platform()
    except PlatformKeyError as exc:
        typer.echo(json.dumps({"error": "keystore_unavailable", "detail": str(exc)}), err=True)
        raise typer.Exit(1) from exc


def _rings(platform: Platform) -> dict[str, Any]:
    return {"response": platform.keys, "receipt": platform.receipt_keys,
            "log": platform.log_keys}


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every ring's published keys (what /v1/platform/keys serves); * marks the signing one."""
    platform = _open()
    try:
        rows = []
        for ring in _rings(platform).values():
            current = ring.current.key_id
            for key in ring.published:
                rows.append({**key.public(), "current": key.key_id == current,
                             "backend": platform.keystore.backend})
    finally:
        platform.close()
    if as_json:
        typer.echo(json.dumps({"keys": rows}, indent=2))
        return
    for row in rows:
        typer.echo(f"{'*' if row['current'] else ' '} {row['purpose']:<8} {row['key_id']:<16}"
                   f" {row['alg']:<18} {row['backend']:<6} not_before={int(row['not_before'])}"
                   f" not_after={int(row['not_after'])}")


@keys_app.command("rotate")
def rotate(
    purpose: Annotated[str, typer.Option(help="response | receipt | log")],
) -> None:
    """Make a new signing key for one ring; the old keys stay published (and keep
    verifying) until they expire. Every platform process switches within a second.
    Appends a ``key.rotated`` entry to the transparency log."""
    from anfu.db.log_store import SqlLogStore
    from anfu.errors import AnfuError
    from anfu.keys import PURPOSES, rotation_log_body

    if purpose not in PURPOSES:
        typer.echo(json.dumps({"error": "purpose_unknown",
                               "detail": f"purpose must be one of {', '.join(PURPOSES)}"}),
                   err=True)
        raise typer.Exit(2)
    platform = _open()
    try:
        ring = _rings(platform)[purpose]
        previous = ring.public_key(ring.current.key_id)
        entry = ring.rotate(platform.clock())
        body = rotation_log_body(ring, entry, previous)
        try:
            platform.write_sync(lambda uow: SqlLogStore(uow.conn).announce_key(
                "key.rotated", entry.key_id, purpose, body, uow.now))
        except AnfuError as exc:
            typer.echo(json.dumps({"error": exc.code, "detail": "the key was rotated but the"
                                   f" log entry was not written: {exc.detail}"}), err=True)
            raise typer.Exit(1) from exc
    finally:
        platform.close()
    typer.echo(json.dumps(entry.public(), indent=2))


@keys_app.command("softhsm-init")
def softhsm_init(
    folder: Annotated[Path, typer.Option(help="where the token files and softhsm2.conf go")]
    = Path("var/softhsm"),
    label: Annotated[str, typer.Option(help="token label (ANFU_PKCS11_TOKEN)")] = "anfu",
    pin: Annotated[str, typer.Option(help="user PIN (ANFU_PKCS11_PIN)", prompt=True,
                                     hide_input=True, confirmation_prompt=True)] = "",
    so_pin: Annotated[str, typer.Option(help="security officer PIN", prompt=True,
                                        hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Development: make a SoftHSM2 token in FOLDER and print the environment that makes
    the platform keep its keys on it (ANFU_KEYSTORE=pkcs11)."""
    tool = shutil.which("softhsm2-util")
    if tool is None:
        typer.echo("softhsm2-util not found: install Debian's softhsm2 (make tools)", err=True)
        raise typer.Exit(1)
    folder = folder.resolve()
    tokens = folder / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    argv = [tool, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin]
    done = subprocess.run(argv, env={"SOFTHSM2_CONF": str(conf)},  # noqa: S603 - fixed tool
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        typer.echo(done.stderr or done.stdout, err=True)
        raise typer.Exit(1)
    typer.echo(f"export SOFTHSM2_CONF={conf}\nexport ANFU_KEYSTORE=pkcs11\n"
               f"export ANFU_PKCS11_MODULE={SOFTHSM_MODULE}\nexport ANFU_PKCS11_TOKEN={label}\n"
               "export ANFU_PKCS11_PIN=...   # the user PIN you chose")
