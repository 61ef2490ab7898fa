"""The operator CLI, run as a user would: plugins, tenants, tokens, errors."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from crmkit.app import create_app
from crmkit.cli import app
from crmkit.platform import Platform
from crmkit.settings import get_settings


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CRMKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CRMKIT_DEV_MODE", "true")
    monkeypatch.delenv("CRMKIT_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRMKIT_REDIS_URL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    yield runner
    get_settings.cache_clear()


def test_tenants_plugins_and_tokens(cli: CliRunner) -> None:
    created = cli.invoke(app, ["tenants", "create", "acme-bank", "Acme Bank"])
    assert created.exit_code == 0, created.output
    assert "acme-bank" in cli.invoke(app, ["tenants", "list"]).output
    duplicate = cli.invoke(app, ["tenants", "create", "acme-bank", "Again"])
    assert duplicate.exit_code == 2 and "CONFLICT" in duplicate.output

    enabled = cli.invoke(app, ["plugins", "enable", "acme-bank", "notes", "--set", "max_note_length=500"])
    assert enabled.exit_code == 0, enabled.output
    refused = cli.invoke(app, ["plugins", "configure", "acme-bank", "notes", "--set", "max_note_length=1"])
    assert refused.exit_code == 2 and "max_note_length" in refused.output
    unknown = cli.invoke(app, ["plugins", "enable", "acme-bank", "nope"])
    assert unknown.exit_code == 2 and "no plugin 'nope' is installed" in unknown.output

    listed = json.loads(cli.invoke(app, ["plugins", "list", "--json"]).output)
    notes = next(p for p in listed["plugins"] if p["name"] == "notes")
    assert notes["enabled_tenants"] == ["acme-bank"] and notes["compatible"]
    assert "register_graphql" in notes["hooks"]

    token = cli.invoke(app, ["token", "issue", "--tenant", "acme-bank", "--all-scopes"])
    assert token.exit_code == 0 and token.output.count(".") == 2
    bad_scope = cli.invoke(
        app, ["token", "issue", "--tenant", "acme-bank", "--scopes", "customers:read,root"]
    )
    assert bad_scope.exit_code == 2 and "root" in bad_scope.output
    no_tenant = cli.invoke(app, ["token", "issue", "--tenant", "ghost", "--all-scopes"])
    assert no_tenant.exit_code == 2 and "NOT_FOUND" in no_tenant.output

    assert cli.invoke(app, ["plugins", "disable", "acme-bank", "notes"]).exit_code == 0
    listed = json.loads(cli.invoke(app, ["plugins", "list", "--json"]).output)
    assert next(p for p in listed["plugins"] if p["name"] == "notes")["enabled_tenants"] == []


def test_demo_prints_a_working_curl_line(cli: CliRunner) -> None:
    result = cli.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    again = cli.invoke(app, ["demo"])  # idempotent
    assert again.exit_code == 0, again.output
    curl = next(line for line in again.output.splitlines() if line.startswith("curl"))
    argv = shlex.split(curl)
    token = argv[argv.index("-H") + 1].removeprefix("Authorization: Bearer ")
    query = json.loads(argv[argv.index("-d") + 1])

    async def send() -> httpx.Response:
        platform = Platform(get_settings())
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            response = await client.post("/graphql", json=query, headers={"Authorization": f"Bearer {token}"})
        await platform.close()
        return response

    nodes = asyncio.run(send()).json()["data"]["customers"]["nodes"]
    assert len(nodes) == 5
    assert all(isinstance(n["notes"], list) for n in nodes)  # the template plugin's field
