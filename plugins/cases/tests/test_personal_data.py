"""What a case says about a customer is personal data: encrypted at rest, in the
customer's export, gone after erasure (a raw scan of every table finds nothing)."""

from __future__ import annotations

from cases_helpers import ENTRY, change, ok, open_case, raw_rows
from crmkit.testing import Env

TABLES = ("cases", "case_entries", "case_links", "case_customer_tiers")
SUBJECT = "Zweistein mortgage arrears"
DESCRIPTION = "Zweistein lost his job in March"
REPLY = "Zweistein may defer two payments"
EXPORT = "query($id: UUID!) { exportCustomerData(id: $id) }"
ERASE = "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }"


async def test_export_holds_the_cases_and_erasure_leaves_no_trace(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    other = (await env.create_customer(tenant, familyName="Other"))["id"]
    case = await open_case(env, tenant, customer, subject=SUBJECT, description=DESCRIPTION)
    ok(await env.gql(ENTRY, {"id": case["id"], "body": REPLY, "visible": True}, tenant=tenant))
    ok(
        await change(
            env,
            tenant,
            {**case, "version": 2},
            "RESOLVED",
            resolution=REPLY,
            resolutionCode="answered",
        )
    )
    kept = await open_case(env, tenant, other, subject="Other's case")

    stored = "".join([await raw_rows(env, table, tenant) for table in TABLES])
    assert "Zweistein" not in stored  # ciphertext only
    assert case["id"].replace("-", "") in stored.replace("-", "")

    exported = ok(await env.gql(EXPORT, {"id": customer}, tenant=tenant))
    [section] = exported["exportCustomerData"]["plugins"]["cases"]
    assert (section["subject"], section["description"], section["resolution"]) == (
        SUBJECT,
        DESCRIPTION,
        REPLY,
    )
    assert [entry["body"] for entry in section["entries"]] == [REPLY]

    ok(await env.gql(ERASE, {"id": customer}, tenant=tenant))
    await env.drain()
    stored = "".join([await raw_rows(env, table, tenant) for table in TABLES]).replace("-", "")
    assert customer.replace("-", "") not in stored and case["id"].replace("-", "") not in stored
    assert kept["id"].replace("-", "") in stored  # another customer's case stays


async def test_no_case_for_an_erased_customer(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, familyName="Gone"))["id"]
    ok(await env.gql(ERASE, {"id": customer}, tenant=tenant))
    refused = await env.gql(
        "mutation($input: OpenCaseInput!) { openCase(input: $input) { id } }",
        {"input": {"customerId": customer, "kind": "ENQUIRY", "channel": "APP", "subject": "x"}},
        tenant=tenant,
    )
    assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert "Gone" not in await raw_rows(env, "cases", tenant)
