"""The public response route through the real ASGI app: the form in the invitation's
locale, its JSON variant, one response per invitation, refusals that store nothing."""

from __future__ import annotations

import uuid

from crmkit.testing import Env, FrozenClock
from surveys_helpers import consenting_customer, count, invite, path_of, published_survey

from crmkit_surveys.models import Answer, Response

VALID = {"recommend": "9", "satisfied": "4", "topics": ["loan", "card"], "comment": "Kind staff"}


async def setup(env: Env, locale: str | None = None) -> tuple[uuid.UUID, str, str]:
    """A tenant, and the path of a fresh invitation (in ``locale``) of a consenting
    customer; the customer's id."""
    tenant = await env.tenant("surveys")
    survey = await published_survey(env, tenant)
    customer = await consenting_customer(env, tenant)
    invitation = await invite(env, tenant, survey, customer, locale)
    return tenant, path_of(invitation["link"]), customer


async def test_the_form_is_served_in_the_invitations_locale_and_records_one_response(
    env: Env,
) -> None:
    tenant, path, _ = await setup(env, locale="de")
    form = await env.client.get(path)
    assert form.status_code == 200, form.text
    assert form.headers["content-type"].startswith("text/html")
    html = form.text
    assert '<html lang="de">' in html and "<title>Ihr Besuch</title>" in html
    assert "Würden Sie uns empfehlen?" in html and "Antworten senden" in html
    assert "<legend>" in html and 'type="radio" name="recommend" value="10"' in html
    assert 'for="t-comment"' in html  # the text box has a label

    sent = await env.client.post(path, data=VALID)
    assert sent.status_code == 200, sent.text
    assert "Vielen Dank" in sent.text
    assert await count(env, tenant, Response) == 1
    assert await count(env, tenant, Answer) == 4

    again = await env.client.post(path, data=VALID)  # the token is single-use
    assert again.status_code == 409
    assert "bereits beantwortet" in again.text
    assert (await env.client.get(path)).status_code == 409
    assert await count(env, tenant, Response) == 1


async def test_a_score_out_of_range_is_refused_in_the_form_and_nothing_is_stored(
    env: Env,
) -> None:
    tenant, path, _ = await setup(env, locale="de")
    refused = await env.client.post(path, data={**VALID, "recommend": "11"})
    assert refused.status_code == 400
    assert 'role="alert"' in refused.text
    assert "Wählen Sie eine der angezeigten Zahlen" in refused.text
    assert 'href="#q-recommend"' in refused.text
    assert "Kind staff" in refused.text  # what was typed is kept for the correction
    missing = await env.client.post(path, data={"satisfied": "4"})
    assert missing.status_code == 400 and "Diese Frage braucht eine Antwort" in missing.text
    assert await count(env, tenant, Response) == 0 and await count(env, tenant, Answer) == 0

    assert (await env.client.post(path, data=VALID)).status_code == 200  # still usable


async def test_the_json_variant_describes_validates_and_records(env: Env) -> None:
    tenant, path, _ = await setup(env)
    described = await env.client.get(path, headers={"Accept": "application/json"})
    assert described.status_code == 200
    body = described.json()
    assert body["locale"] == "en" and body["version"] == 1
    recommend = body["questions"][0]
    assert (recommend["key"], recommend["type"], recommend["min"], recommend["max"]) == (
        "recommend",
        "nps",
        0,
        10,
    )
    for answers, field, reason in (
        ({"recommend": 11}, "recommend", "range"),
        ({"recommend": -1}, "recommend", "range"),
        ({"recommend": 7.5}, "recommend", "range"),
        ({"recommend": True}, "recommend", "range"),
        ({"satisfied": 4}, "recommend", "required"),
        ({"recommend": 8, "topics": ["loan", "loan"]}, "topics", "choice"),
        ({"recommend": 8, "topics": ["gold"]}, "topics", "choice"),
        ({"recommend": 8, "comment": "x" * 2001}, "comment", "text"),
        ({"recommend": 8, "bogus": 1}, "bogus", "unknown"),
    ):
        refused = await env.client.post(path, json={"answers": answers})
        assert refused.status_code == 400, (answers, refused.text)
        error = refused.json()
        assert (error["error"], error["field"], error["reason"]) == (
            "BAD_USER_INPUT",
            field,
            reason,
        )
        assert error["message"].startswith(f"{field}: ")
    for body in (b"{", b"[]", b'{"answers": 9}'):
        refused = await env.client.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 400 and "answers" in refused.json()["message"]
    assert await count(env, tenant, Response) == 0 and await count(env, tenant, Answer) == 0

    recorded = await env.client.post(path, json={"answers": {"recommend": 10}})
    assert recorded.status_code == 201 and recorded.json()["status"] == "recorded"
    reused = await env.client.post(path, json={"answers": {"recommend": 10}})
    assert reused.status_code == 409 and reused.json()["reason"] == "used"


async def test_expired_and_forged_tokens_are_refused(env: Env, clock: FrozenClock) -> None:
    tenant, path, _ = await setup(env)
    forged = path.rsplit("/", 1)[0] + "/" + "A" * 43
    answer = await env.client.post(forged, json={"answers": {"recommend": 9}})
    assert answer.status_code == 404 and answer.json()["reason"] == "invalid"
    page = await env.client.get(forged, headers={"Accept-Language": "fr-CH,fr;q=0.9"})
    assert page.status_code == 404 and "lien d&#39;enquête n&#39;est pas valide" in page.text
    other_tenant = path.replace(str(tenant), str(await env.tenant()))
    assert (await env.client.get(other_tenant)).status_code == 404

    clock.advance(days=14, seconds=1)  # invitation_valid_days defaults to 14
    expired = await env.client.post(path, json={"answers": {"recommend": 9}})
    assert expired.status_code == 409 and expired.json()["reason"] == "expired"
    assert await count(env, tenant, Response) == 0


async def test_requests_are_rate_limited_per_token(env: Env, clock: FrozenClock) -> None:
    _, path, _ = await setup(env)
    statuses = [(await env.client.get(path)).status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]  # TOKEN_PER_MINUTE
    limited = await env.client.get(path, headers={"Accept": "application/json"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) <= 60


async def test_requests_are_rate_limited_per_client_address(env: Env) -> None:
    tenant = await env.tenant("surveys", surveys={"responses_per_minute_per_address": 3})
    forged = f"/plugins/surveys/respond/{tenant}/"
    statuses = [(await env.client.get(forged + f"t{i}")).status_code for i in range(4)]
    assert statuses == [404, 404, 404, 429]  # other tokens, one address
