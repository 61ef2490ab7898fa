"""The operator CLI, run as a user would: plugins, tenants, tokens, errors."""

from __future__ import annotations

import asyncio
import json
import shlex
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from crmkit.app import create_app
from crmkit.auth.tokens import TokenService
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


def audit_actors(slug: str) -> set[tuple[str, str, str]]:
    """(actor type, actor id, action) of every audit event of tenant ``slug``."""
    from sqlalchemy import select

    from crmkit.core.audit.models import AuditEvent
    from crmkit.tenants.service import get_tenant

    async def read() -> set[tuple[str, str, str]]:
        platform = Platform(get_settings())
        try:
            tenant = await get_tenant(platform.db, slug)
            async with platform.db.tenant_session(tenant.id) as session:
                rows = await session.execute(
                    select(AuditEvent.actor_type, AuditEvent.actor_id, AuditEvent.action)
                )
                return {(r.actor_type, r.actor_id, r.action) for r in rows}
        finally:
            await platform.close()

    return asyncio.run(read())


def test_offboarded_and_suspended_tenants_refuse_writes_and_credentials(cli: CliRunner) -> None:
    assert cli.invoke(app, ["tenants", "create", "gone-bank", "Gone Bank"]).exit_code == 0
    assert cli.invoke(app, ["tenants", "offboard", "gone-bank", "--confirm", "gone-bank"]).exit_code == 0
    for argv in (
        ["plugins", "enable", "gone-bank", "notes"],
        ["token", "issue", "--tenant", "gone-bank", "--all-scopes"],
        ["users", "create", "gone-bank", "a@gone.example", "--role", "analyst"],
        ["tenants", "configure", "gone-bank", "--activity-retention-days", "30"],
    ):
        refused = cli.invoke(app, argv)
        assert refused.exit_code == 2 and "offboarded" in refused.output, (argv, refused.output)
    assert cli.invoke(app, ["tenants", "create", "paused-bank", "Paused Bank"]).exit_code == 0
    assert cli.invoke(app, ["tenants", "suspend", "paused-bank"]).exit_code == 0
    token = cli.invoke(app, ["token", "issue", "--tenant", "paused-bank", "--all-scopes"])
    assert token.exit_code == 2 and "suspended" in token.output
    assert cli.invoke(app, ["plugins", "enable", "paused-bank", "notes"]).exit_code == 0


def test_onboarding_is_one_transaction_and_configuration_errors_are_one_line(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMKIT_DEV_MODE", "false")
    get_settings.cache_clear()
    no_key = cli.invoke(app, ["tenants", "create", "keyless", "Keyless"])
    assert no_key.exit_code == 2, no_key.output
    assert no_key.output.strip().count("\n") == 0 and "CRMKIT_MASTER_KEY" in no_key.output
    monkeypatch.setenv("CRMKIT_ACCESS_TOKEN_MINUTES", "0")
    get_settings.cache_clear()
    bad_setting = cli.invoke(app, ["tenants", "list"])
    assert bad_setting.exit_code == 2 and "CRMKIT_ACCESS_TOKEN_MINUTES" in bad_setting.output
    monkeypatch.delenv("CRMKIT_ACCESS_TOKEN_MINUTES")
    monkeypatch.setenv("CRMKIT_DEV_MODE", "true")
    get_settings.cache_clear()
    assert "keyless" not in cli.invoke(app, ["tenants", "list"]).output

    long_name = cli.invoke(
        app,
        [
            "tenants",
            "create",
            "named",
            "Named",
            "--admin-email",
            "a@named.example",
            "--admin-name",
            "x" * 300,
        ],
    )
    assert long_name.exit_code == 2 and "display name" in long_name.output
    retry = cli.invoke(app, ["tenants", "create", "named", "Named", "--admin-email", "a@named.example"])
    assert retry.exit_code == 0, retry.output
    assert cli.invoke(app, ["tenants", "create", "keyless", "Keyless", "--plugin", "notes"]).exit_code == 0
    assert ("operator", "cli", "tenant.onboard") in audit_actors("keyless")


def test_unknown_plugin_settings_are_refused_by_name(cli: CliRunner) -> None:
    assert cli.invoke(app, ["tenants", "create", "typo-bank", "Typo Bank"]).exit_code == 0
    typo = cli.invoke(app, ["plugins", "enable", "typo-bank", "notes", "--set", "note_on_archve=true"])
    assert typo.exit_code == 2 and "note_on_archve" in typo.output
    assert cli.invoke(app, ["plugins", "enable", "typo-bank", "notes"]).exit_code == 0
    typo = cli.invoke(app, ["plugins", "configure", "typo-bank", "notes", "--set", "note_on_archve=true"])
    assert typo.exit_code == 2 and "note_on_archve" in typo.output


def test_every_cli_act_is_attributed_to_the_cli(cli: CliRunner) -> None:
    assert cli.invoke(app, ["tenants", "create", "who-bank", "Who Bank"]).exit_code == 0
    assert cli.invoke(app, ["plugins", "enable", "who-bank", "notes"]).exit_code == 0
    assert (
        cli.invoke(
            app, ["plugins", "configure", "who-bank", "notes", "--set", "max_note_length=300"]
        ).exit_code
        == 0
    )
    assert (
        cli.invoke(app, ["users", "create", "who-bank", "a@who.example", "--role", "analyst"]).exit_code == 0
    )
    assert cli.invoke(app, ["tenants", "suspend", "who-bank"]).exit_code == 0
    actors = {(kind, who) for kind, who, _ in audit_actors("who-bank")}
    assert actors == {("operator", "cli")}


def test_lifetimes_and_retention_have_the_same_bounds_everywhere(cli: CliRunner) -> None:
    assert cli.invoke(app, ["tenants", "create", "bound-bank", "Bound Bank"]).exit_code == 0
    forever = cli.invoke(app, ["tenants", "configure", "bound-bank", "--activity-retention-days", "0"])
    assert forever.exit_code == 0 and forever.output.strip() == "bound-bank: activities kept forever"
    kept = cli.invoke(app, ["tenants", "configure", "bound-bank", "--activity-retention-days", "30"])
    assert kept.output.strip() == "bound-bank: activities kept 30 days"
    for minutes in ("-5", "0", "10000000"):
        issued = cli.invoke(
            app, ["token", "issue", "--tenant", "bound-bank", "--all-scopes", "--minutes", minutes]
        )
        assert issued.exit_code == 2 and "1440" in issued.output, issued.output
        operator = cli.invoke(app, ["token", "operator", "--name", "alice", "--minutes", minutes])
        assert operator.exit_code == 2 and "minutes" in operator.output, operator.output
    assert (
        cli.invoke(
            app, ["token", "issue", "--tenant", "bound-bank", "--all-scopes", "--minutes", "1440"]
        ).exit_code
        == 0
    )


def test_demo_refuses_a_busy_port_before_printing_anything(cli: CliRunner) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = cli.invoke(app, ["demo", "--port", str(port)])
    assert refused.exit_code == 2 and f"port {port}" in refused.output
    assert "curl" not in refused.output and "demo-bank" not in cli.invoke(app, ["tenants", "list"]).output


def test_make_run_takes_a_port() -> None:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    planned = subprocess.run(
        ["make", "-n", "-W", ".venv/.installed", "run", "PORT=8123"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "demo --port 8123" in planned and "serve --host 127.0.0.1 --port 8123" in planned
    assert "8000" not in planned


def test_demo_enables_each_installed_plugin_once(cli: CliRunner) -> None:
    from crmkit.demo import SLUG, setup_demo
    from crmkit.platform.registry import load_registry
    from crmkit.tenants.service import get_tenant
    from tests import recorder_plugin

    async def demo(with_recorder: bool) -> uuid.UUID:
        registry = load_registry()
        if with_recorder:
            registry.add(recorder_plugin)
        platform = Platform(get_settings(), registry=registry)
        try:
            await setup_demo(platform, customers=2)
            return (await get_tenant(platform.db, SLUG)).id
        finally:
            await platform.close()

    asyncio.run(demo(with_recorder=False))
    tenant = asyncio.run(demo(with_recorder=True))  # a plugin installed since the first run
    asyncio.run(demo(with_recorder=True))
    enabled = [call for call, _ in recorder_plugin.CALLS[tenant] if call == "plugin_enabled"]
    assert enabled == ["plugin_enabled"]
    listed = json.loads(cli.invoke(app, ["plugins", "list", "--json"]).output)
    assert all(p["enabled_tenants"] == [SLUG] for p in listed["plugins"])


def test_enabling_says_a_running_server_needs_a_restart_for_new_plugins(cli: CliRunner) -> None:
    assert cli.invoke(app, ["tenants", "create", "new-bank", "New Bank"]).exit_code == 0
    enabled = cli.invoke(app, ["plugins", "enable", "new-bank", "notes"])
    assert enabled.exit_code == 0 and "restart" in enabled.output


def test_token_revoke_refuses_access_and_operator_tokens(cli: CliRunner) -> None:
    assert cli.invoke(app, ["tenants", "create", "rev-bank", "Rev Bank"]).exit_code == 0
    access = cli.invoke(app, ["token", "issue", "--tenant", "rev-bank", "--all-scopes"]).output.strip()
    other = cli.invoke(app, ["token", "issue", "--tenant", "rev-bank", "--all-scopes"]).output.strip()
    ops = cli.invoke(app, ["token", "operator", "--name", "alice"]).output.strip()
    ops_jti = cli.invoke(app, ["token", "operator", "--name", "bob"]).output.strip()

    async def status(path: str, token: str) -> int:
        platform = Platform(get_settings())
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            response = await client.post(
                path, json={"query": "{ __typename }"}, headers={"Authorization": f"Bearer {token}"}
            )
        await platform.close()
        return response.status_code

    assert asyncio.run(status("/graphql", access)) == 200
    assert asyncio.run(status("/operator/graphql", ops)) == 200
    from joserfc import jwt

    def jti(token: str) -> str:
        return str(jwt.decode(token, TokenService(get_settings()).key).claims["jti"])

    for argv in (
        ["token", "revoke", access],
        ["token", "revoke", jti(other), "--tenant", "rev-bank"],
        ["token", "revoke", ops],
        ["token", "revoke", jti(ops_jti)],
    ):
        revoked = cli.invoke(app, argv)
        assert revoked.exit_code == 0, revoked.output
    assert asyncio.run(status("/graphql", access)) == 401
    assert asyncio.run(status("/graphql", other)) == 401
    assert asyncio.run(status("/operator/graphql", ops)) == 401
    assert asyncio.run(status("/operator/graphql", ops_jti)) == 401
    no_tenant = cli.invoke(app, ["token", "revoke", jti(other)])
    assert no_tenant.exit_code == 2 and "--tenant" in no_tenant.output
