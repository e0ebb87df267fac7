"""``anfu verify``: offline checks of what the platform signed.

- ``anfu verify receipt BUNDLE.json --keys KEYS.json``: a receipt bundle (``GET
  /v1/receipts/{txn_id}``) against the published keys (``GET /v1/platform/keys``, saved).
- ``anfu verify log OLD_STH.json NEW_STH.json --keys KEYS.json [--mobile-url URL | --proof
  FILE]``: a monitor's check that the newer tree head extends the older one. With
  ``--auditor ADMIN_URL`` (or ``--entries FILE``, saved from it) also the auditor's check:
  every entry of the newer tree, each committed entry's body and salt opening its
  commitment, and all of them rebuilding the newer tree head's signed root.

- ``anfu verify ledger``: (operators, on the platform's database) every ledger seal
  recomputed from the transfers and compared with the ``ledger.batch`` entries of the log.

One line per check, ``ok`` or ``FAILED <check>: <why>``; exit status 0 when all pass, 1 when
one fails, 2 when an input cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

verify_app = typer.Typer(help="Verify receipts and the transparency log offline.",
                         no_args_is_help=True)


def _load(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        typer.echo(f"FAILED input: cannot read {what} {path}: {exc}")
        raise typer.Exit(2) from None


def _keys(path: Path | None, mobile_url: str | None) -> list[dict[str, Any]]:
    if path is not None:
        data = _load(path, "keys")
    elif mobile_url:
        import httpx

        try:
            data = httpx.get(f"{mobile_url.rstrip('/')}/v1/platform/keys", timeout=10).json()
        except (httpx.HTTPError, ValueError) as exc:
            typer.echo(f"FAILED input: cannot fetch the platform keys: {exc}")
            raise typer.Exit(2) from None
    else:
        typer.echo("FAILED input: give --keys KEYS.json (the saved /v1/platform/keys)")
        raise typer.Exit(2)
    keys = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(keys, list):
        typer.echo("FAILED input: the keys file holds no key list")
        raise typer.Exit(2)
    return keys


@verify_app.command("receipt")
def receipt(
    bundle_file: Annotated[Path, typer.Argument(help="receipt bundle JSON")],
    keys: Annotated[Path, typer.Option("--keys", help="saved /v1/platform/keys JSON")],
) -> None:
    """Check a receipt bundle: receipt signature, tree head signature, inclusion proof."""
    from anfu.transparency.verify import VerificationFailed, verify_receipt_bundle

    bundle = _load(bundle_file, "receipt bundle")
    try:
        summary = verify_receipt_bundle(bundle, _keys(keys, None))
    except VerificationFailed as exc:
        typer.echo(f"FAILED {exc.check}: {exc.detail}")
        raise typer.Exit(1) from None
    for check in summary["checks"]:
        typer.echo(f"ok {check}")
    typer.echo(f"ok receipt {summary['txn_id']} ({summary['kind']}) is leaf"
               f" {summary['leaf_index']} of the signed tree of size {summary['tree_size']}")


@verify_app.command("log")
def log_consistency(
    old: Annotated[Path, typer.Argument(help="the older signed tree head (get-sth JSON)")],
    new: Annotated[Path, typer.Argument(help="the newer signed tree head")],
    keys: Annotated[Path | None, typer.Option("--keys", help="saved /v1/platform/keys"
                                              " JSON (default: fetched from --mobile-url)")]
    = None,
    mobile_url: Annotated[str | None, typer.Option("--mobile-url", "--url",
                                                   help="fetch the consistency proof"
                                                   " from this platform")] = None,
    proof: Annotated[Path | None, typer.Option("--proof", help="get-sth-consistency JSON"
                                               " saved earlier (offline)")] = None,
    auditor: Annotated[str | None, typer.Option("--auditor", help="auditor mode: fetch"
                                                " every entry with its private body from"
                                                " this admin zone and check them all")]
    = None,
    entries: Annotated[Path | None, typer.Option("--entries", help="auditor mode, offline:"
                                                 " the admin zone's /v1/log/entries JSON"
                                                 " of the whole newer tree, saved")] = None,
    admin_token: Annotated[str | None, typer.Option("--admin-token",
                                                    envvar="ANFU_ADMIN_TOKEN",
                                                    help="the admin zone's operator token"
                                                    " (for --auditor)")] = None,
) -> None:
    """Check that NEW extends OLD: both signatures, and the consistency proof; with
    --auditor or --entries, every entry of NEW and every commitment too."""
    from anfu.transparency.verify import (
        VerificationFailed,
        verify_sth,
        verify_sth_consistency,
    )

    old_sth, new_sth = _load(old, "tree head"), _load(new, "tree head")
    key_list = _keys(keys, mobile_url)
    try:
        first = verify_sth(old_sth, key_list)
        typer.echo(f"ok old tree head signature (size {first['tree_size']})")
        second = verify_sth(new_sth, key_list)
        typer.echo(f"ok new tree head signature (size {second['tree_size']})")
        hashes = _consistency(first["tree_size"], second["tree_size"], mobile_url, proof)
        verify_sth_consistency(old_sth, new_sth, hashes, key_list)
        typer.echo(f"ok consistency: the tree of size {second['tree_size']} extends the tree"
                   f" of size {first['tree_size']}")
        if auditor is None and entries is None:
            return
        from anfu.transparency.audit import verify_audited_entries

        leaves = (_load_entries(entries) if entries is not None
                  else _fetch_entries(auditor or "", admin_token, second["tree_size"]))
        audit = verify_audited_entries(leaves, new_sth, key_list)
    except VerificationFailed as exc:
        typer.echo(f"FAILED {exc.check}: {exc.detail}")
        raise typer.Exit(1) from None
    typer.echo(f"ok audit: {audit['committed']} commitments open, and the"
               f" {audit['tree_size']} entries ({audit['public']} public) make the signed"
               " root")


def _load_entries(path: Path) -> list[Any]:
    data = _load(path, "log entries")
    found = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(found, list):
        typer.echo("FAILED input: the entries file holds no entry list")
        raise typer.Exit(2)
    return found


def _fetch_entries(admin_url: str, token: str | None, size: int) -> list[Any]:
    """Leaves 0..size-1 from the admin zone's auditor route, a page (1000) at a time."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out: list[Any] = []
    with httpx.Client(base_url=admin_url.rstrip("/"), headers=headers, timeout=30) as client:
        while len(out) < size:
            try:
                reply = client.get("/v1/log/entries",
                                   params={"start": len(out), "end": size - 1})
                page = reply.json()
            except (httpx.HTTPError, ValueError) as exc:
                typer.echo(f"FAILED input: cannot fetch the log entries: {exc}")
                raise typer.Exit(2) from None
            rows = page.get("entries") if isinstance(page, dict) else None
            if reply.status_code != 200 or not isinstance(rows, list) or not rows:
                detail = page.get("detail") if isinstance(page, dict) else None
                typer.echo(f"FAILED input: the admin zone refused the log entries:"
                           f" {detail or reply.status_code}")
                raise typer.Exit(2)
            out += rows
    return out


def _consistency(first: int, second: int, mobile_url: str | None,
                 proof: Path | None) -> list[Any]:
    if first == 0 or first == second:
        return []
    if proof is not None:
        data = _load(proof, "consistency proof")
    elif mobile_url:
        import httpx

        try:
            reply = httpx.get(f"{mobile_url.rstrip('/')}/log/v1/get-sth-consistency",
                              params={"first": first, "second": second}, timeout=10)
            data = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            typer.echo(f"FAILED input: cannot fetch the consistency proof: {exc}")
            raise typer.Exit(2) from None
        if reply.status_code != 200:
            typer.echo(f"FAILED input: the platform refused the consistency proof:"
                       f" {data.get('detail', reply.status_code)}")
            raise typer.Exit(2)
    else:
        typer.echo("FAILED input: give --mobile-url URL or --proof FILE")
        raise typer.Exit(2)
    hashes = data.get("consistency") if isinstance(data, dict) else data
    if isinstance(data, dict) and (data.get("first", first), data.get("second", second)) != (
            first, second):
        typer.echo(f"FAILED consistency_tree_size: the proof is for sizes"
                   f" {data.get('first')}..{data.get('second')}, not {first}..{second}")
        raise typer.Exit(1)
    if not isinstance(hashes, list):
        typer.echo("FAILED input: the proof holds no consistency list")
        raise typer.Exit(2)
    return hashes


@verify_app.command("ledger")
def ledger_seals() -> None:
    """Recompute every ledger seal from the transfers and compare it with the log."""
    from anfu.config import Settings
    from anfu.db.engine import make_engine
    from anfu.db.seal_store import SqlSealStore

    engine = make_engine(Settings().resolved_database_url)
    try:
        with engine.connect() as conn:
            store = SqlSealStore(conn)
            seals = store.seals()
            problems = store.check()
    finally:
        engine.dispose()
    for problem in problems:
        typer.echo(f"FAILED ledger_seal: {problem}")
    if problems:
        raise typer.Exit(1)
    transfers = sum(s.transfers for s in seals)
    typer.echo(f"ok ledger: {len(seals)} seals cover {transfers} transfers"
               f" (seq 1..{seals[-1].to_seq if seals else 0}), each matching the log")
