"""``anfu sms outbox``, ``anfu carrier token`` and ``anfu carrier sim-change`` read and write
the same state files as the platform's sandbox adapters under ANFU_HOME."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anfu.adapters.carrier.sandbox import SandboxCarrier
from anfu.adapters.carrier.sandbox import default_state_path as carrier_state
from anfu.adapters.sms.sandbox import SandboxSmsGateway
from anfu.adapters.sms.sandbox import default_state_path as sms_state
from anfu.cli.main import app

PHONE = "+8613800138000"
OTHER = "+8613900139001"

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANFU_HOME", str(tmp_path))
    return tmp_path


def send(home: Path, message_id: str, phone: str, text: str, sent_at: float) -> None:
    gateway = SandboxSmsGateway(latency_ms=0, clock=lambda: sent_at,
                                state_path=sms_state(home))
    asyncio.run(gateway.send(message_id=message_id, phone=phone, text=text))


def test_outbox_shows_what_the_platform_sent_newest_first(home: Path) -> None:
    send(home, "m1", PHONE, "anfu code 123456", sent_at=1_750_000_000.0)
    send(home, "m2", OTHER, "anfu code 654321\nvalid 5 min", sent_at=1_750_000_060.0)
    result = runner.invoke(app, ["sms", "outbox"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "TIME (UTC)            PHONE           STATUS     TEXT",
        "2025-06-15T15:07:40Z  +8613900139001  delivered  anfu code 654321\\nvalid 5 min",
        "2025-06-15T15:06:40Z  +8613800138000  delivered  anfu code 123456",
    ]
    only = runner.invoke(app, ["sms", "outbox", "--phone", PHONE, "--limit", "5"])
    assert "654321" not in only.output and "123456" in only.output


def test_outbox_as_json(home: Path) -> None:
    send(home, "m1", PHONE, "anfu code 123456", sent_at=1_750_000_000.0)
    result = runner.invoke(app, ["sms", "outbox", "--json"])
    assert result.exit_code == 0, result.output
    [message] = json.loads(result.output)
    assert message == {"message_id": "m1", "phone": PHONE, "text": "anfu code 123456",
                       "status": "delivered", "segments": 1,
                       "sent_at": "2025-06-15T15:06:40+00:00",
                       "updated_at": "2025-06-15T15:06:40+00:00", "reason": ""}


def test_an_outbox_never_written_is_explained_not_created(home: Path) -> None:
    result = runner.invoke(app, ["sms", "outbox"])
    assert result.exit_code == 0
    assert "no SMS sent yet" in result.output and "ANFU_HOME" in result.output
    assert runner.invoke(app, ["sms", "outbox", "--json"]).output.strip() == "[]"
    assert not sms_state(home).exists()


def test_token_proves_the_number_to_the_platforms_operator(home: Path) -> None:
    result = runner.invoke(app, ["carrier", "token", PHONE])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("sbxnt_")
    operator = SandboxCarrier(latency_ms=0, state_path=carrier_state(home))
    verdict = asyncio.run(operator.verify_network_token(token=token, phone=PHONE))
    assert verdict.matched
    assert runner.invoke(app, ["carrier", "token", PHONE]).output.strip() != token


def test_token_for_a_malformed_number_is_refused(home: Path) -> None:
    result = runner.invoke(app, ["carrier", "token", "not-a-phone"])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "invalid_phone"


def test_sim_change_is_seen_by_the_platforms_operator(home: Path) -> None:
    operator = SandboxCarrier(latency_ms=0, state_path=carrier_state(home))
    result = runner.invoke(app, ["carrier", "sim-change", PHONE,
                                 "--at", "2025-06-01T08:30:00+08:00"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"the SIM of {PHONE} changed at 2025-06-01T00:30:00Z"
    assert (asyncio.run(operator.last_sim_change(PHONE))
            == datetime(2025, 6, 1, 0, 30, tzinfo=UTC))
    assert runner.invoke(app, ["carrier", "sim-change", PHONE, "--clear"]).exit_code == 0
    assert asyncio.run(operator.last_sim_change(PHONE)) is None
    before = datetime.now(UTC)
    assert runner.invoke(app, ["carrier", "sim-change", PHONE]).exit_code == 0
    changed = asyncio.run(operator.last_sim_change(PHONE))
    assert changed is not None and changed >= before


@pytest.mark.parametrize(("args", "complaint"), [
    (["--at", "2025-06-01T08:30:00"], "no time zone"),
    (["--at", "yesterday"], "not an ISO 8601 time"),
    (["--at", "2025-06-01T08:30:00Z", "--clear"], "not both"),
])
def test_sim_change_refuses_unclear_times(home: Path, args: list[str],
                                          complaint: str) -> None:
    result = runner.invoke(app, ["carrier", "sim-change", PHONE, *args])
    assert result.exit_code == 2
    # The error is boxed and wrapped to the terminal's width: compare the words only.
    assert complaint in " ".join(result.output.replace("│", " ").split())
