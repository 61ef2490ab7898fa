"""Tenant lifecycle through the operator API: onboard, suspend, reactivate, offboard."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from crmkit.core.audit.chain import verify
from crmkit.core.audit.models import AuditEvent
from crmkit.core.customers.models import Customer
from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.tenants.users import Role, find_by_email
from crmkit.testing import Env
from tests.test_customers_graphql import PAGE

ONBOARD = """mutation($input: OnboardTenantInput!) {
  onboardTenant(input: $input) { tenant { id slug status } adminEmail adminPassword } }"""


async def operator(
    env: Env,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    status: int = 200,
) -> dict[str, Any]:
    token = token or OperatorTokens(env.tokens).issue("ops-test")
    response = await env.client.post(
        "/operator/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_only_operator_tokens_reach_the_operator_api(env: Env) -> None:
    tenant = await env.tenant()
    refused = await operator(env, "{ tenants { slug } }", token=env.token(tenant), status=401)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    ops = OperatorTokens(env.tokens).issue("ops-test")
    body = await env.gql(PAGE, token=ops, status=401)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_onboard_with_plugins_and_refuse_bad_settings(env: Env) -> None:
    slug = f"bank-{uuid.uuid4().hex[:8]}"
    bad = await operator(
        env,
        ONBOARD,
        {
            "input": {
                "slug": slug,
                "name": "Bank",
                "plugins": [{"name": "notes", "settings": {"max_note_length": 1}}],
            }
        },
    )
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    listed = await operator(env, "{ tenants { slug } }")
    assert slug not in [t["slug"] for t in listed["data"]["tenants"]]
    done = await operator(
        env,
        ONBOARD,
        {
            "input": {
                "slug": slug,
                "name": "Bank",
                "admin": {"email": "Admin@Bank.example", "displayName": "First Admin"},
                "plugins": [{"name": "notes", "settings": {"max_note_length": 500}}],
            }
        },
    )
    onboarded = done["data"]["onboardTenant"]
    tenant = uuid.UUID(onboarded["tenant"]["id"])
    assert onboarded["adminEmail"] == "admin@bank.example" and len(onboarded["adminPassword"]) >= 12
    async with env.platform.tenant_scope(tenant) as scope:
        user = await find_by_email(scope.session, "admin@bank.example")
        assert user is not None and user.role is Role.TENANT_ADMIN
        assert onboarded["adminPassword"] not in str(user.password_hash)
    schema = await env.gql('{ __type(name: "Customer") { fields { name } } }', tenant=tenant)
    assert "notes" in {f["name"] for f in schema["data"]["__type"]["fields"]}


async def test_suspension_ends_every_session_and_reactivation_needs_new_tokens(env: Env) -> None:
    from authlib.integrations.base_client import OAuthError

    from tests.test_oauth import TOKEN_URL, code_flow, setup

    tenant, app, email = await setup(env)
    slug = await _slug(env, tenant)
    client, oauth = await code_flow(env, app, tenant, email)
    token = env.token(tenant)
    assert "errors" not in await env.gql(PAGE, token=token)
    await operator(env, "mutation($s: String!) { suspendTenant(slug: $s) { status } }", {"s": slug})
    assert (await env.gql(PAGE, token=token, status=401))["errors"][0]["extensions"][
        "code"
    ] == "UNAUTHENTICATED"
    await operator(env, "mutation($s: String!) { reactivateTenant(slug: $s) { status } }", {"s": slug})
    for old in (token, oauth["access_token"]):
        refused = await env.gql(PAGE, token=old, status=401)
        assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    with pytest.raises(OAuthError):
        await client.refresh_token(TOKEN_URL, refresh_token=oauth["refresh_token"])
    await client.aclose()
    assert "errors" not in await env.gql(PAGE, tenant=tenant)  # tokens issued since work
    async with env.platform.db.tenant_session(tenant) as session:
        actions = list(await session.scalars(select(AuditEvent.action)))
    assert {"tenant.suspend", "tenant.reactivate"} <= set(actions)


async def test_a_revoked_operator_token_is_refused(env: Env) -> None:
    from crmkit.platform.operator_tokens import revoke_token

    tokens = OperatorTokens(env.tokens)
    token, other = tokens.issue("ops-test"), tokens.issue("ops-test")
    assert "errors" not in await operator(env, "{ tenants { slug } }", token=token)
    await revoke_token(env.platform, token)
    refused = await operator(env, "{ tenants { slug } }", token=token, status=401)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "errors" not in await operator(env, "{ tenants { slug } }", token=other)


async def test_operator_acts_are_attributed_to_the_operator(env: Env) -> None:
    slug = f"bank-{uuid.uuid4().hex[:8]}"
    done = await operator(
        env,
        ONBOARD,
        {
            "input": {
                "slug": slug,
                "name": "Bank",
                "admin": {"email": "admin@bank.example", "displayName": "First Admin"},
                "plugins": [{"name": "notes"}],
            }
        },
    )
    tenant = uuid.UUID(done["data"]["onboardTenant"]["tenant"]["id"])
    async with env.platform.db.tenant_session(tenant) as session:
        actors = set((await session.execute(select(AuditEvent.actor_type, AuditEvent.actor_id))).tuples())
    assert actors == {("operator", "ops-test")}


async def test_offboard_purges_data_destroys_the_key_and_keeps_the_audit_trail(env: Env) -> None:
    tenant = await env.tenant("notes")
    other = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Gone", email="gone@example.com")
    await env.gql(
        'mutation($id: UUID!) { addNote(customerId: $id, body: "bye") { id } }',
        {"id": customer["id"]},
        tenant=tenant,
    )
    await env.create_customer(other, givenName="Stays")
    await env.queue.drain()
    slug = await _slug(env, tenant)
    wrong = await operator(
        env, 'mutation($s: String!) { offboardTenant(slug: $s, confirm: "nope") { status } }', {"s": slug}
    )
    assert wrong["errors"][0]["extensions"]["field"] == "confirm"
    done = await operator(
        env, "mutation($s: String!) { offboardTenant(slug: $s, confirm: $s) { status } }", {"s": slug}
    )
    assert done["data"]["offboardTenant"]["status"] == "OFFBOARDED"
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 0
        actions = list(await session.scalars(select(AuditEvent.action)))
    assert "tenant.offboard" in actions
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok
    assert (await env.gql(PAGE, tenant=tenant, status=401))["errors"][0]["extensions"][
        "code"
    ] == "UNAUTHENTICATED"
    assert len((await env.gql(PAGE, tenant=other))["data"]["customers"]["nodes"]) == 1


async def _slug(env: Env, tenant: uuid.UUID) -> str:
    listed = await operator(env, "{ tenants { id slug } }")
    return next(t["slug"] for t in listed["data"]["tenants"] if t["id"] == str(tenant))


async def test_unknown_settings_keys_are_refused_whatever_the_plugins_model_says(env: Env) -> None:
    slug = f"bank-{uuid.uuid4().hex[:8]}"
    plugins = [{"name": "recorder", "settings": {"treshold": 5}}]  # RecorderSettings allows extras
    bad = await operator(env, ONBOARD, {"input": {"slug": slug, "name": "Bank", "plugins": plugins}})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert bad["errors"][0]["extensions"]["fields"] == ["treshold"]
    listed = await operator(env, "{ tenants { slug } }")
    assert slug not in [t["slug"] for t in listed["data"]["tenants"]]


async def test_changing_the_retention_policy_is_audited(env: Env) -> None:
    from crmkit.platform.lifecycle import configure_retention

    tenant = await env.tenant()
    await configure_retention(env.platform, await _slug(env, tenant), 30)
    async with env.platform.db.tenant_session(tenant) as session:
        event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "tenant.configure"))
    assert event is not None and event.fields == ["activity_retention_days"]
