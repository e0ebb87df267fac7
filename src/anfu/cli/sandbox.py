"""``anfu sms`` and ``anfu carrier``: what the sandbox outside parties would show a person.

The sandbox SMS gateway delivers nothing, so its outbox is where a developer reads the codes
a phone would have received; the sandbox operator hands out the network tokens a phone's app
would receive and records SIM changes. Both keep their state in files under the platform home
(``ANFU_HOME``), shared with every worker process of ``anfu run``. The adapters are imported
inside each command so that ``anfu --help`` stays quick.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from anfu.config import Settings
from anfu.errors import AnfuError

if TYPE_CHECKING:
    from anfu.adapters.sms.sandbox import OutboxMessage

sms_app = typer.Typer(
    help="The sandbox SMS gateway: read the messages the platform sent (nothing is delivered;"
         " verification codes are read here instead of on a phone).",
    no_args_is_help=True)
carrier_app = typer.Typer(
    help="The sandbox mobile operator: hand out network tokens for SIM-based login and record"
         " SIM changes (the SIM-swap risk signal).",
    no_args_is_help=True)

PHONE_HELP = "Phone number, 6-15 digits with an optional leading +, e.g. +8613800138000"


def _home() -> Path:
    try:
        return Settings().home
    except ValueError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _refused(exc: AnfuError) -> NoReturn:
    # The same shape as the other commands' refusals, so scripts read one format.
    typer.echo(json.dumps({"error": exc.code, "detail": exc.detail}), err=True)
    raise typer.Exit(1) from exc


def _utc_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@sms_app.command("outbox")
def outbox(
    phone: Annotated[str | None, typer.Option(help=f"Only messages to this number. {PHONE_HELP}")]
    = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many messages to show")]
    = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array (with message_id,"
                                                         " segments, updated_at, reason)")]
    = False,
) -> None:
    """Show the newest messages the sandbox SMS gateway accepted, newest first.

    The table shows when each was sent (UTC), to whom, its delivery status (queued,
    delivered or failed; numbers ending in 0000 always fail) and its text.
    """
    from anfu.adapters.sms.sandbox import SandboxSmsGateway, default_state_path

    path = default_state_path(_home())
    if not path.exists():
        # Reading must not create the file: a wrong ANFU_HOME would then look like an empty
        # outbox instead of a mistake.
        if as_json:
            typer.echo("[]")
        else:
            typer.echo(f"no SMS sent yet: {path} does not exist. The platform creates it with"
                       " its first message; check that ANFU_HOME is the platform's home.")
        return
    try:
        messages = SandboxSmsGateway(state_path=path).outbox(phone, limit)
    except AnfuError as exc:
        _refused(exc)
    if as_json:
        typer.echo(json.dumps([_outbox_json(m) for m in messages], indent=2,
                              ensure_ascii=False))
    elif not messages:
        typer.echo(f"no messages to {phone}" if phone else "no messages")
    else:
        typer.echo(_outbox_table(messages))


def _outbox_json(message: OutboxMessage) -> dict[str, object]:
    return {"message_id": message.message_id, "phone": message.phone, "text": message.text,
            "status": message.status, "segments": message.segments,
            "sent_at": message.sent_at.isoformat(), "updated_at": message.updated_at.isoformat(),
            "reason": message.reason}


def _outbox_table(messages: list[OutboxMessage]) -> str:
    rows = [("TIME (UTC)", "PHONE", "STATUS", "TEXT")]
    # A text on one line keeps the table a table.
    rows += [(_utc_text(m.sent_at), m.phone, m.status,
              m.text.replace("\r", "\\r").replace("\n", "\\n")) for m in messages]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)),
                                row[3]]) for row in rows)


@carrier_app.command("token")
def token(phone: Annotated[str, typer.Argument(help=PHONE_HELP)]) -> None:
    """Print a fresh network token for PHONE, as the operator hands it to the phone's app.

    Only the phone holding that SIM would receive it. Log in with it through the platform's
    SIM-based login: it proves the number once, within two minutes, and is spent by its first
    use whatever the answer.
    """
    from anfu.adapters.carrier.sandbox import SandboxCarrier, default_state_path

    try:
        issued = SandboxCarrier(state_path=default_state_path(_home())).issue_token(phone)
    except AnfuError as exc:
        _refused(exc)
    typer.echo(issued)


@carrier_app.command("sim-change")
def sim_change(
    phone: Annotated[str, typer.Argument(help=PHONE_HELP)],
    at: Annotated[str | None, typer.Option(
        help="When the SIM changed, ISO 8601 with a time zone, e.g. 2025-06-01T08:30:00+08:00"
             " or 2025-06-01T00:30:00Z (default: now)")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Forget the SIM change on record")]
    = False,
) -> None:
    """Record that PHONE got a new SIM, as the operator would report it.

    A recent SIM change is the mark of SIM-swap fraud: the platform refuses a SIM-only
    login for ANFU_SIM_CHANGE_HOLD_S (72 h) after it, and shows it to operators.
    """
    from anfu.adapters.carrier.sandbox import SandboxCarrier, default_state_path

    if clear and at is not None:
        raise typer.BadParameter("give either --at or --clear, not both", param_hint="--at")
    when = None if clear else _parse_time(at) if at is not None else datetime.now(UTC)
    try:
        operator = SandboxCarrier(state_path=default_state_path(_home()))
        operator.set_sim_changed(phone, when)
    except AnfuError as exc:
        _refused(exc)
    if when is None:
        typer.echo(f"no SIM change on record for {phone}")
    else:
        typer.echo(f"the SIM of {phone} changed at {_utc_text(when)}")


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time, e.g."
                                 " 2025-06-01T08:30:00+08:00", param_hint="--at") from exc
    if when.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no time zone; add one, e.g. +08:00 or Z",
                                 param_hint="--at")
    return when
