"""Staff users and roles: the role table, argon2id hashes, tenant admins managing users
through GraphQL, and an analyst seeing masked contact data end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmkit.cli import app as cli_app
from crmkit.platform.registry import PluginRegistry, load_registry
from crmkit.plugins.info import Scope
from crmkit.settings import get_settings
from crmkit.tenants.users import (
    ROLES,
    PluginAccess,
    Role,
    find_by_email,
    role_scopes,
    verify_password,
)
from crmkit.testing import Env
from tests.test_oauth import (
    AUTHORIZE_URL,
    PASSWORD,
    TOKEN_URL,
    OAuthError,
    code_flow,
    install,
    partner,
    sign_in,
    staff,
)

USERS = "query($role: Role, $active: Boolean) { users(role: $role, active: $active) { nodes { email role active } } }"
CREATE = """mutation($input: CreateUserInput!) {
  createUser(input: $input) { password user { id email displayName role active } }
}"""
UPDATE = """mutation($id: UUID!, $input: UpdateUserInput!) {
  updateUser(id: $id, input: $input) { id role active displayName }
}"""


def test_every_role_maps_to_registered_core_scopes() -> None:
    core = set(load_registry(discover=False).scopes())
    for role in Role:
        assert ROLES[role].core <= core, role
    assert set(ROLES) == set(Role)


def test_roles_to_scopes(plugin_registry: PluginRegistry) -> None:
    core = set(plugin_registry.scopes(()))
    declared = plugin_registry.scopes(["notes", "recorder"])
    available = set(declared)

    def scopes(role: Role) -> set[str]:
        return set(role_scopes(role, declared, core))

    assert scopes(Role.TENANT_ADMIN) == available  # everything, plugins included
    assert {"users:admin", "apps:admin"} <= scopes(Role.TENANT_ADMIN)
    rm = scopes(Role.RELATIONSHIP_MANAGER)
    assert {"customers:read", "customers:write", "activities:read", "activities:write"} <= rm
    assert {"consent:read", "consent:write", "pii:identity", "pii:contact"} <= rm
    assert {"notes:read", "notes:write", "recorder:read"} <= rm  # the plugins' read/write scopes
    assert not {"users:admin", "apps:admin", "audit:read", "privacy:erase"} & rm
    analyst = scopes(Role.ANALYST)
    assert analyst == {"customers:read", "activities:read", "pii:identity"}  # no pii:contact
    compliance = scopes(Role.COMPLIANCE_OFFICER)
    assert {"audit:read", "customers:read", "consent:read", "privacy:export", "privacy:erase"} <= compliance
    assert "customers:write" not in compliance and "notes:read" not in compliance
    agent = scopes(Role.SERVICE_AGENT)
    assert "customers:write" not in agent and "activities:write" in agent
    # a plugin not enabled for the tenant lends no scope
    assert "notes:read" not in set(role_scopes(Role.TENANT_ADMIN, plugin_registry.scopes(()), core))
    assert ROLES[Role.RELATIONSHIP_MANAGER].plugins is PluginAccess.READ_WRITE


def test_a_plugin_scope_names_the_roles_that_hold_it(plugin_registry: PluginRegistry) -> None:
    """A plugin decides which roles hold each of its scopes; admins hold all of them."""
    core = plugin_registry.scopes(())
    declared = {
        **core,
        "cases:work": Scope("cases:work", "Work cases.", frozenset({Role.SERVICE_AGENT})),
        "cases:read": Scope("cases:read", "Read cases.", frozenset({Role.SERVICE_AGENT, Role.ANALYST})),
        "cases:manage": Scope("cases:manage", "Monitoring.", frozenset({Role.COMPLIANCE_OFFICER})),
    }
    held = {role: role_scopes(role, declared, core) - set(core) for role in Role}
    assert held[Role.TENANT_ADMIN] == {"cases:work", "cases:read", "cases:manage"}
    assert held[Role.SERVICE_AGENT] == {"cases:work", "cases:read"}
    assert held[Role.ANALYST] == {"cases:read"}
    assert held[Role.COMPLIANCE_OFFICER] == {"cases:manage"}
    assert held[Role.RELATIONSHIP_MANAGER] == set()  # named roles replace the default rule


async def test_passwords_are_argon2id_hashes(env: Env) -> None:
    tenant = await env.tenant()
    email, user_id = await staff(env, tenant, Role.ANALYST)
    async with env.platform.db.tenant_session(tenant) as session:
        user = await find_by_email(session, email.upper())  # e-mail addresses match in any case
        assert user is not None and user.id == user_id
        stored = user.password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "!")
    assert not verify_password(None, PASSWORD)  # an unknown user: same work, refused


async def test_tenant_admin_manages_users(env: Env) -> None:
    tenant = await env.tenant()
    admin = env.token(tenant, ["users:admin"])
    created = await env.gql(
        CREATE,
        {"input": {"email": "Ana@Bank.example", "displayName": "Ana", "role": "ANALYST"}},
        token=admin,
    )
    assert "errors" not in created, created
    ana = created["data"]["createUser"]
    assert ana["user"]["email"] == "ana@bank.example" and ana["user"]["role"] == "ANALYST"
    assert len(ana["password"]) >= 20  # generated, shown once
    chosen = await env.gql(
        CREATE,
        {
            "input": {
                "email": "bo@bank.example",
                "displayName": "Bo",
                "role": "TENANT_ADMIN",
                "password": PASSWORD,
            }
        },
        token=admin,
    )
    assert chosen["data"]["createUser"]["password"] is None
    duplicate = await env.gql(
        CREATE,
        {"input": {"email": "ana@bank.example", "displayName": "Ana 2", "role": "ANALYST"}},
        token=admin,
    )
    assert duplicate["errors"][0]["extensions"]["code"] == "CONFLICT"
    short = await env.gql(
        CREATE,
        {"input": {"email": "cy@bank.example", "displayName": "Cy", "role": "ANALYST", "password": "short"}},
        token=admin,
    )
    assert short["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    changed = await env.gql(
        UPDATE, {"id": ana["user"]["id"], "input": {"role": "RELATIONSHIP_MANAGER"}}, token=admin
    )
    assert changed["data"]["updateUser"]["role"] == "RELATIONSHIP_MANAGER"
    listed = await env.gql(USERS, {"role": "RELATIONSHIP_MANAGER"}, token=admin)
    assert [u["email"] for u in listed["data"]["users"]["nodes"]] == ["ana@bank.example"]
    off = await env.gql(UPDATE, {"id": ana["user"]["id"], "input": {"active": False}}, token=admin)
    assert off["data"]["updateUser"]["active"] is False
    everyone = await env.gql(USERS, {}, token=admin)
    assert {u["email"] for u in everyone["data"]["users"]["nodes"]} == {"ana@bank.example", "bo@bank.example"}

    # the last active tenant admin stays one
    bo = next(
        u
        for u in (await env.gql("{ users { nodes { id email } } }", token=admin))["data"]["users"]["nodes"]
        if u["email"] == "bo@bank.example"
    )
    last = await env.gql(UPDATE, {"id": bo["id"], "input": {"role": "ANALYST"}}, token=admin)
    assert last["errors"][0]["extensions"]["code"] == "CONFLICT"

    # without users:admin: refused; another tenant's admin sees none of them
    forbidden = await env.gql(USERS, {}, token=env.token(tenant, ["customers:read"]))
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    other = await env.tenant()
    theirs = await env.gql(USERS, {}, token=env.token(other, ["users:admin"]))
    assert theirs["data"]["users"]["nodes"] == []
    foreign = await env.gql(
        UPDATE, {"id": bo["id"], "input": {"active": False}}, token=env.token(other, ["users:admin"])
    )
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_analyst_sees_masked_contact_data_end_to_end(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(
        tenant, givenName="Alice", familyName="Smith", email="alice@example.com"
    )
    app = await partner(env, scopes=("customers:read", "pii:identity", "pii:contact"))
    await install(env, tenant, app, ["customers:read", "pii:identity", "pii:contact"])
    query = "query($id: UUID!) { customer(id: $id) { givenName email } }"

    analyst, _ = await staff(env, tenant, Role.ANALYST)
    client, token = await code_flow(env, app, tenant, analyst)
    assert token["scope"] == "customers:read pii:identity"
    seen = await env.gql(query, {"id": customer["id"]}, token=token["access_token"])
    assert seen["data"]["customer"] == {"givenName": "Alice", "email": "a***@example.com"}

    manager, _ = await staff(env, tenant, Role.RELATIONSHIP_MANAGER)
    _, manager_token = await code_flow(env, app, tenant, manager)
    seen = await env.gql(query, {"id": customer["id"]}, token=manager_token["access_token"])
    assert seen["data"]["customer"] == {"givenName": "Alice", "email": "alice@example.com"}
    await client.aclose()


async def test_deactivated_users_lose_their_tokens_and_cannot_sign_in(env: Env) -> None:
    tenant = await env.tenant()
    app = await partner(env)
    await install(env, tenant, app, ["customers:read"])
    email, user_id = await staff(env, tenant, Role.RELATIONSHIP_MANAGER)
    client, token = await code_flow(env, app, tenant, email)
    query = "{ customers { nodes { id } } }"
    await env.gql(query, token=token["access_token"])
    admin = env.token(tenant, ["users:admin"])
    off = await env.gql(UPDATE, {"id": str(user_id), "input": {"active": False}}, token=admin)
    assert "errors" not in off, off
    await env.gql(query, token=token["access_token"], status=401)
    with pytest.raises(OAuthError) as refresh:
        await client.refresh_token(TOKEN_URL, refresh_token=token["refresh_token"])
    assert refresh.value.error == "invalid_grant"
    url, _ = client.create_authorization_url(AUTHORIZE_URL, code_verifier="v" * 50)
    again = await sign_in(env, url, tenant, email)
    assert again.status_code == 200 and "not right" in again.text
    await client.aclose()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CRMKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CRMKIT_DEV_MODE", "true")
    monkeypatch.delenv("CRMKIT_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRMKIT_MIGRATION_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRMKIT_REDIS_URL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(cli_app, ["db", "upgrade"]).exit_code == 0
    yield runner
    get_settings.cache_clear()


def test_cli_creates_users_and_registers_apps(cli: CliRunner) -> None:
    assert cli.invoke(cli_app, ["tenants", "create", "acme-bank", "Acme Bank"]).exit_code == 0
    generated = cli.invoke(
        cli_app, ["users", "create", "acme-bank", "ops@acme.example", "--role", "tenant_admin"]
    )
    assert generated.exit_code == 0, generated.output
    assert "password: " in generated.output
    piped = cli.invoke(
        cli_app,
        ["users", "create", "acme-bank", "ana@acme.example", "--role", "analyst", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert piped.exit_code == 0 and "password:" not in piped.output, piped.output
    bad_role = cli.invoke(cli_app, ["users", "create", "acme-bank", "x@acme.example", "--role", "root"])
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
    duplicate = cli.invoke(cli_app, ["users", "create", "acme-bank", "OPS@acme.example", "--role", "analyst"])
    assert duplicate.exit_code == 2 and "CONFLICT" in duplicate.output

    registered = cli.invoke(
        cli_app,
        [
            "apps",
            "register",
            "Partner",
            "--redirect-uri",
            "https://partner.example/cb",
            "--scopes",
            "customers:read",
        ],
    )
    assert registered.exit_code == 0, registered.output
    client_id = registered.output.split("client_id: ")[1].split()[0]
    assert "client_secret: " in registered.output
    installed = cli.invoke(cli_app, ["apps", "install", "acme-bank", client_id, "--scopes", "customers:read"])
    assert installed.exit_code == 0, installed.output
    insecure = cli.invoke(
        cli_app,
        [
            "apps",
            "register",
            "Bad",
            "--redirect-uri",
            "http://partner.example/cb",
            "--scopes",
            "customers:read",
        ],
    )
    assert insecure.exit_code == 2 and "https" in insecure.output
