"""No statement parameter ever reaches a log line or a CLI error: they carry personal
data and credentials (a staff user's e-mail and password hash, a customer's values)."""

from __future__ import annotations

import logging

import pytest
import typer
from sqlalchemy import text

from crmkit import cli
from crmkit.platform import Platform
from crmkit.testing import Env

PLANTED = "planted-secret-4f1c@example.org"


async def test_a_failing_statement_keeps_its_parameters_out_of_errors_and_logs(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as failure:
        async with env.platform.db.engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:value AS INTEGER) + missing_column"), {"value": PLANTED})
    logging.getLogger("crmkit").exception("as a handler would log it", exc_info=failure.value)
    assert PLANTED not in str(failure.value)
    assert PLANTED not in caplog.text


def test_a_database_error_in_the_cli_is_one_line_without_sql_or_parameters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.setenv("CRMKIT_DEV_MODE", "true")
    monkeypatch.setenv("CRMKIT_DATA_DIR", str(tmp_path))

    async def failing(platform: Platform) -> None:
        async with platform.db.engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:value AS INTEGER) + missing_column"), {"value": PLANTED})

    with pytest.raises(typer.Exit) as exit_:
        cli.run(failing)
    assert exit_.value.exit_code == 2
    out = capsys.readouterr()
    assert PLANTED not in out.err + out.out
    assert "SELECT" not in out.err and out.err.startswith("error (DATABASE):")
    assert len(out.err.strip().splitlines()) == 1
