"""Customers and activities through GraphQL: CRUD, pagination, filters, events."""

from __future__ import annotations

from typing import Any

from crmkit.testing import CREATE_CUSTOMER, Env, StatementCounter
from tests import recorder_plugin

PAGE = """
query($first: Int, $after: String, $filter: CustomerFilterInput) {
  customers(first: $first, after: $after, filter: $filter) {
    nodes { id displayName tags lifecycleStage }
    edges { cursor }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def test_create_read_update_archive(env: Env) -> None:
    tenant = await env.tenant()
    created = await env.create_customer(
        tenant,
        givenName="Ada",
        familyName="Lovelace",
        email="ada@example.com",
        tags=["Premium", "savings"],
    )
    assert created["displayName"] == "Ada Lovelace"
    assert created["tags"] == ["premium", "savings"]
    assert created["lifecycleStage"] == "NEW"

    got = await env.gql(
        "query($id: UUID!) { customer(id: $id) { displayName email version } }",
        {"id": created["id"]},
        tenant=tenant,
    )
    assert got["data"]["customer"] == {
        "displayName": "Ada Lovelace",
        "email": "ada@example.com",
        "version": 1,
    }

    updated = await env.gql(
        'mutation($id: UUID!) { updateCustomer(id: $id, input: {lifecycleStage: AT_RISK, familyName: "King"}, expectedVersion: 1) { displayName lifecycleStage version } }',
        {"id": created["id"]},
        tenant=tenant,
    )
    assert updated["data"]["updateCustomer"] == {
        "displayName": "Ada King",
        "lifecycleStage": "AT_RISK",
        "version": 2,
    }

    stale = await env.gql(
        'mutation($id: UUID!) { updateCustomer(id: $id, input: {familyName: "X"}, expectedVersion: 1) { version } }',
        {"id": created["id"]},
        tenant=tenant,
    )
    assert stale["errors"][0]["extensions"]["code"] == "CONFLICT"

    archived = await env.gql(
        "mutation($id: UUID!) { archiveCustomer(id: $id) { archivedAt } }",
        {"id": created["id"]},
        tenant=tenant,
    )
    assert archived["data"]["archiveCustomer"]["archivedAt"]
    listed = await env.gql(PAGE, tenant=tenant)
    assert listed["data"]["customers"]["nodes"] == []
    with_archived = await env.gql(PAGE, {"filter": {"includeArchived": True}}, tenant=tenant)
    assert len(with_archived["data"]["customers"]["nodes"]) == 1


async def test_create_is_idempotent_by_external_ref(env: Env) -> None:
    tenant = await env.tenant()
    first = await env.create_customer(tenant, givenName="Bo", externalRef="core-42")
    again = await env.create_customer(tenant, givenName="Bo", externalRef="core-42")
    assert first["id"] == again["id"]


async def test_a_customer_has_a_time_zone_of_their_own(env: Env) -> None:
    """An IANA name, checked; shown on a customer and on a page; cleared by null; part of
    what a retry by externalRef must repeat."""
    tenant = await env.tenant()
    created = await env.create_customer(
        tenant, givenName="Li", externalRef="tz-1", timeZone=" Asia/Shanghai "
    )
    zone = "query($id: UUID!) { customer(id: $id) { timeZone } }"
    assert (await env.gql(zone, {"id": created["id"]}, tenant=tenant))["data"]["customer"] == {
        "timeZone": "Asia/Shanghai"
    }
    page = await env.gql("{ customers(first: 5) { nodes { id timeZone } } }", tenant=tenant)
    assert page["data"]["customers"]["nodes"] == [{"id": created["id"], "timeZone": "Asia/Shanghai"}]

    bad = {"kind": "PERSON", "givenName": "Mo", "timeZone": "Mars/Olympus"}
    refused = await env.gql(CREATE_CUSTOMER, {"input": bad}, tenant=tenant)
    assert (
        refused["errors"][0]["extensions"] | {"field": "timeZone", "code": "BAD_USER_INPUT"}
        == refused["errors"][0]["extensions"]
    )
    assert "is not a time zone" in refused["errors"][0]["message"]
    assert (
        len((await env.gql("{ customers { nodes { id } } }", tenant=tenant))["data"]["customers"]["nodes"])
        == 1
    )

    retry = {"kind": "PERSON", "givenName": "Li", "externalRef": "tz-1", "timeZone": "Europe/Paris"}
    conflict = await env.gql(CREATE_CUSTOMER, {"input": retry}, tenant=tenant)
    assert conflict["errors"][0]["extensions"]["field"] == "timeZone"

    update = "mutation($id: UUID!, $zone: String) { updateCustomer(id: $id, input: {timeZone: $zone}) { timeZone version } }"
    moved = await env.gql(update, {"id": created["id"], "zone": "Europe/Paris"}, tenant=tenant)
    assert moved["data"]["updateCustomer"] == {"timeZone": "Europe/Paris", "version": 2}
    cleared = await env.gql(update, {"id": created["id"], "zone": None}, tenant=tenant)
    assert cleared["data"]["updateCustomer"] == {"timeZone": None, "version": 3}


async def test_pagination_walks_every_customer_once(env: Env) -> None:
    tenant = await env.tenant()
    ids = [(await env.create_customer(tenant, givenName=f"P{i}"))["id"] for i in range(7)]
    seen: list[str] = []
    after = None
    while True:
        page = (await env.gql(PAGE, {"first": 3, "after": after}, tenant=tenant))["data"]["customers"]
        seen += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids


async def test_filters_by_tag_stage_and_text(env: Env) -> None:
    tenant = await env.tenant()
    await env.create_customer(tenant, givenName="Carla", familyName="Rossi", tags=["sme"])
    await env.create_customer(tenant, givenName="Dmitri", familyName="Orlov", lifecycleStage="CHURNED")
    await env.create_customer(tenant, kind="ORGANISATION", organisationName="Rossi Holdings 100%")

    async def names(filter: dict[str, Any]) -> list[str]:
        body = await env.gql(PAGE, {"filter": filter}, tenant=tenant)
        return sorted(n["displayName"] for n in body["data"]["customers"]["nodes"])

    assert await names({"tag": "SME"}) == ["Carla Rossi"]
    assert await names({"stage": "CHURNED"}) == ["Dmitri Orlov"]
    # names are encrypted: the text filter matches whole words through blind indexes,
    # in any case and with or without accents, never parts of words
    assert await names({"text": "rossi"}) == ["Carla Rossi", "Rossi Holdings 100%"]
    assert await names({"text": "RÓSSI carla"}) == ["Carla Rossi"]
    assert await names({"text": "ross"}) == []
    assert await names({"text": "100"}) == ["Rossi Holdings 100%"]
    body = await env.gql(PAGE, {"filter": {"text": "%"}}, tenant=tenant)
    assert body["errors"][0]["extensions"]["field"] == "text"


async def test_an_update_rewrites_the_indexes_of_the_changed_fields_only(
    env: Env, sql_statements: StatementCounter
) -> None:
    tenant = await env.tenant()
    created = await env.create_customer(
        tenant, givenName="Nia", familyName="Obi", email="nia@example.com", phone="+44 20 1"
    )
    update = "mutation($id: UUID!, $input: UpdateCustomerInput!) { updateCustomer(id: $id, input: $input) { version } }"

    async def found(filter: dict[str, Any]) -> bool:
        body = await env.gql(PAGE, {"filter": filter}, tenant=tenant)
        return [n["id"] for n in body["data"]["customers"]["nodes"]] == [created["id"]]

    sql_statements.clear()
    await env.gql(update, {"id": created["id"], "input": {"email": "obi@example.com"}}, tenant=tenant)
    # the names did not change: their tokens are neither deleted nor written again
    assert not [s for s in sql_statements.statements if "customer_name_tokens" in s]
    assert await found({"text": "obi nia"}) and await found({"phone": "+44201"})
    assert await found({"email": "OBI@example.com"}) and not await found({"email": "nia@example.com"})

    sql_statements.clear()
    await env.gql(update, {"id": created["id"], "input": {"familyName": "Eze"}}, tenant=tenant)
    assert len([s for s in sql_statements.statements if "customer_name_tokens" in s]) == 2
    assert await found({"text": "eze nia"}) and not await found({"text": "obi"})
    assert await found({"email": "obi@example.com"}) and await found({"phone": "+44201"})


async def test_activities_record_and_list(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Eve")
    record = """mutation($input: RecordActivityInput!) { recordActivity(input: $input) { id kind amount currency } }"""
    for i in range(3):
        body = await env.gql(
            record,
            {
                "input": {
                    "customerId": customer["id"],
                    "kind": "TRANSACTION",
                    "channel": "APP",
                    "amount": f"{i}.50",
                    "currency": "EUR",
                }
            },
            tenant=tenant,
        )
        assert body["data"]["recordActivity"]["currency"] == "EUR", body
    await env.gql(
        record,
        {"input": {"customerId": customer["id"], "kind": "LOGIN", "channel": "WEB"}},
        tenant=tenant,
    )
    listed = await env.gql(
        "query($id: UUID!) { activities(customerId: $id, first: 2, kind: TRANSACTION) { nodes { amount } pageInfo { hasNextPage } } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    page = listed["data"]["activities"]
    assert [n["amount"] for n in page["nodes"]] == ["2.5000", "1.5000"]
    assert page["pageInfo"]["hasNextPage"] is True


async def test_validation_hook_vetoes_and_nothing_is_written(env: Env) -> None:
    tenant = await env.tenant("recorder")
    body = await env.gql(CREATE_CUSTOMER, {"input": {"kind": "PERSON", "givenName": "Veto"}}, tenant=tenant)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Veto" in body["errors"][0]["message"]
    listed = await env.gql(PAGE, {"filter": {"includeArchived": True}}, tenant=tenant)
    assert listed["data"]["customers"]["nodes"] == []
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "customer_created") == []


async def test_events_reach_enabled_plugins_after_commit(env: Env) -> None:
    tenant = await env.tenant("recorder")
    customer = await env.create_customer(tenant, givenName="Finn")
    await env.gql(
        'mutation($id: UUID!) { updateCustomer(id: $id, input: {email: "f@example.com"}) { id } }',
        {"id": customer["id"]},
        tenant=tenant,
    )
    await env.gql(
        "mutation($id: UUID!) { archiveCustomer(id: $id) { id } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    await env.gql(
        "mutation($id: UUID!) { recordActivity(input: {customerId: $id, kind: COMPLAINT, channel: PHONE}) { id } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "customer_created") == [customer["id"]]
    assert recorder_plugin.calls(tenant, "customer_updated") == [("email",)]
    assert recorder_plugin.calls(tenant, "customer_archived") == [customer["id"]]
    assert recorder_plugin.calls(tenant, "activity_recorded") == ["complaint"]
    assert recorder_plugin.calls(tenant, "validate_activity") == ["complaint"]
    assert "given_name" in recorder_plugin.calls(tenant, "validate_customer")[0]
