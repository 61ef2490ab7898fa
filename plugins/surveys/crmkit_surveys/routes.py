"""The public response route: ``/plugins/surveys/respond/{tenant_id}/{token}``, no login.

``GET`` shows the invitation's survey as a small accessible HTML form in the
invitation's locale, rendered on the server (no script); ``POST`` records the answers,
once. A caller that sends ``Accept: application/json`` (``GET``) or a JSON body
(``POST``, ``{"answers": {"<question key>": value}}``) gets JSON instead. A forged,
used or expired token, an answer out of range and a missing required answer are
refused with a message (in the form's language on the HTML side) and store nothing.
Rate-limited per token and per client address.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import crmkit
import jinja2
from litestar import MediaType, Request, get, post
from litestar import Response as HttpResponse
from litestar.exceptions import SerializationException
from litestar.params import FromPath

from crmkit_surveys import service
from crmkit_surveys.questions import MAX_TEXT, SCALES, Definition, QuestionType
from crmkit_surveys.settings import SurveysSettings

TOKEN_PER_MINUTE = 20
"""Requests a single token may make per minute: a form is opened and sent a few times."""

UI: dict[str, dict[str, str]] = {
    "en": {
        "submit": "Send my answers",
        "required": "required",
        "required_note": "Questions marked * need an answer.",
        "check": "Please check your answer",
        "thanks": "Thank you: your answers were recorded.",
        "invalid": "This survey link is not valid.",
        "used": "This survey was already answered with this link. Thank you!",
        "expired": "This survey link has expired.",
        "busy": "Too many attempts: please try again in a minute.",
        "range": "Choose one of the numbers shown.",
        "answer_required": "This question needs an answer.",
        "choice": "Choose from the options shown.",
        "text": f"Please write at most {MAX_TEXT} characters.",
        "nps": "Not at all likely|Extremely likely",
        "csat": "Very dissatisfied|Very satisfied",
        "ces": "Very difficult|Very easy",
        "servqual": "Strongly disagree|Strongly agree",
    },
    "de": {
        "submit": "Antworten senden",
        "required": "Pflichtfeld",
        "required_note": "Fragen mit * brauchen eine Antwort.",
        "check": "Bitte prüfen Sie Ihre Antwort",
        "thanks": "Vielen Dank: Ihre Antworten wurden gespeichert.",
        "invalid": "Dieser Umfragelink ist ungültig.",
        "used": "Diese Umfrage wurde mit diesem Link bereits beantwortet. Vielen Dank!",
        "expired": "Dieser Umfragelink ist abgelaufen.",
        "busy": "Zu viele Versuche: bitte versuchen Sie es in einer Minute erneut.",
        "range": "Wählen Sie eine der angezeigten Zahlen.",
        "answer_required": "Diese Frage braucht eine Antwort.",
        "choice": "Wählen Sie aus den angezeigten Möglichkeiten.",
        "text": f"Bitte schreiben Sie höchstens {MAX_TEXT} Zeichen.",
        "nps": "Überhaupt nicht wahrscheinlich|Äußerst wahrscheinlich",
        "csat": "Sehr unzufrieden|Sehr zufrieden",
        "ces": "Sehr schwierig|Sehr einfach",
        "servqual": "Stimme überhaupt nicht zu|Stimme voll zu",
    },
    "fr": {
        "submit": "Envoyer mes réponses",
        "required": "obligatoire",
        "required_note": "Les questions marquées * demandent une réponse.",
        "check": "Veuillez vérifier votre réponse",
        "thanks": "Merci : vos réponses ont été enregistrées.",
        "invalid": "Ce lien d'enquête n'est pas valide.",
        "used": "Cette enquête a déjà reçu une réponse avec ce lien. Merci !",
        "expired": "Ce lien d'enquête a expiré.",
        "busy": "Trop de tentatives : veuillez réessayer dans une minute.",
        "range": "Choisissez l'un des nombres proposés.",
        "answer_required": "Cette question demande une réponse.",
        "choice": "Choisissez parmi les options proposées.",
        "text": f"Veuillez écrire au plus {MAX_TEXT} caractères.",
        "nps": "Pas du tout probable|Très probable",
        "csat": "Très insatisfait|Très satisfait",
        "ces": "Très difficile|Très facile",
        "servqual": "Pas du tout d'accord|Tout à fait d'accord",
    },
}
"""The form's own words, by language; a locale without them (``pt-BR``) falls back to
its language (``pt``), then to English. The survey's wording is the tenant's."""

REASON_TEXT = {"required": "answer_required", "unknown": "choice"}

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def ui(locale: str) -> dict[str, str]:
    return UI.get(locale) or UI.get(locale.split("-")[0].lower()) or UI["en"]


def _accepted_locale(request: Request[Any, Any, Any]) -> str:
    """For pages shown before an invitation is known: the browser's first language."""
    header = request.headers.get("accept-language", "")
    return header.split(",")[0].split(";")[0].strip() or "en"


def _question_view(
    definition: Definition, locale: str, values: dict[str, Any]
) -> list[dict[str, Any]]:
    words = ui(locale)
    views = []
    for question in definition.questions:
        value = values.get(question.key)
        view: dict[str, Any] = {
            "key": question.key,
            "text": question.text[locale],
            "required": question.required,
            "value": value if isinstance(value, str) else None,
            "chosen": value if isinstance(value, list) else [value],
            "scale": None,
            "options": [{"key": o.key, "text": o.text[locale]} for o in question.options],
            "multiple": question.type is QuestionType.MULTIPLE_CHOICE,
        }
        if question.type in SCALES:
            low, high = SCALES[question.type]
            view["scale"] = list(range(low, high + 1))
            view["low"], view["high"] = words[question.type.value].split("|")
        views.append(view)
    return views


def _page(
    locale: str,
    *,
    status: int = 200,
    title: str,
    notice: str | None = None,
    definition: Definition | None = None,
    values: dict[str, Any] | None = None,
    problem: dict[str, str] | None = None,
    action: str = "",
) -> HttpResponse[str]:
    html = templates.get_template("form.html").render(
        locale=locale,
        title=title,
        notice=notice,
        ui=ui(locale),
        questions=_question_view(definition, locale, values or {}) if definition else [],
        problem=problem,
        action=action,
        max_text=MAX_TEXT,
    )
    return HttpResponse(
        html,
        status_code=status,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _json_error(error: crmkit.CrmError) -> HttpResponse[dict[str, Any]]:
    body = {"error": error.code, "message": error.message}
    body.update({k: v for k, v in error.extensions.items() if k in ("field", "reason")})
    headers = {"Cache-Control": "no-store"}
    if isinstance(error, crmkit.RateLimited):
        headers["Retry-After"] = str(error.extensions.get("retry_after", 60))
    return HttpResponse(body, status_code=crmkit.error_status(error), headers=headers)


def _form_values(form: Any, definition: Definition) -> dict[str, Any]:
    """The form's answers by question key; checkboxes give lists."""
    values: dict[str, Any] = {}
    for question in definition.questions:
        if question.type is QuestionType.MULTIPLE_CHOICE:
            values[question.key] = form.getall(question.key, [])
        elif question.key in form:
            values[question.key] = form.get(question.key)
    return values


async def _handle(
    request: Request[Any, Any, Any], tenant_id: uuid.UUID, token: str, *, submit: bool
) -> HttpResponse[Any]:
    content_type = request.headers.get("content-type", "")
    as_json = (
        content_type.startswith("application/json")
        if submit
        else "application/json" in request.headers.get("accept", "")
    )
    locale = _accepted_locale(request)
    definition: Definition | None = None
    values: dict[str, Any] = {}
    try:
        await crmkit.rate_limit(
            request, f"token:{service.token_hash(token).hex()[:32]}", per_minute=TOKEN_PER_MINUTE
        )
        async with crmkit.plugin_scope(request, tenant_id) as ctx:
            settings = ctx.settings_as(SurveysSettings)
            address = request.client.host if request.client else "unknown"
            await crmkit.rate_limit(
                request,
                f"address:{tenant_id}:{address}",
                per_minute=settings.responses_per_minute_per_address,
            )
            opened = await service.open_invitation(ctx, token)
            locale, definition = opened.invitation.locale, opened.definition
            title = definition.title[locale]
            if not submit:
                if as_json:
                    return HttpResponse(_describe(opened), headers={"Cache-Control": "no-store"})
                return _page(locale, title=title, definition=definition)
            if as_json:
                try:
                    body = await request.json()
                except SerializationException:
                    body = None
                sent = body.get("answers") if isinstance(body, dict) else None
                if not isinstance(sent, dict):
                    raise crmkit.BadUserInput('send {"answers": {"<question key>": value}}')
                values = sent
            else:
                values = _form_values(await request.form(), definition)
            response = await service.respond(ctx, opened, values)
    except crmkit.CrmError as error:  # the scope rolled back: nothing was stored
        if as_json:
            return _json_error(error)
        return _error_page(error, locale, definition, values)
    if as_json:
        return HttpResponse(
            {"response_id": str(response.id), "status": "recorded"}, status_code=201
        )
    return _page(locale, title=title, notice=ui(locale)["thanks"])


def _error_page(
    error: crmkit.CrmError, locale: str, definition: Definition | None, values: dict[str, Any]
) -> HttpResponse[str]:
    locale = str(error.extensions.get("locale", locale))
    words = ui(locale)
    reason = str(error.extensions.get("reason", ""))
    if isinstance(error, crmkit.RateLimited):
        reason = "busy"
    text = words.get(REASON_TEXT.get(reason, reason), error.message)
    field = error.extensions.get("field")
    if definition is not None and isinstance(error, crmkit.BadUserInput) and field:
        return _page(
            locale,
            status=crmkit.error_status(error),
            title=definition.title[locale],
            definition=definition,
            values=values,
            problem={"field": str(field), "text": text},
        )
    title = definition.title[locale] if definition is not None else text
    return _page(locale, status=crmkit.error_status(error), title=title, notice=text)


def _describe(opened: service.OpenInvitation) -> dict[str, Any]:
    """The JSON variant of the form: what to ask, in the invitation's locale."""
    locale, definition = opened.invitation.locale, opened.definition
    questions = []
    for question in definition.questions:
        described: dict[str, Any] = {
            "key": question.key,
            "type": question.type.value,
            "text": question.text[locale],
            "required": question.required,
        }
        if question.type in SCALES:
            described["min"], described["max"] = SCALES[question.type]
        if question.options:
            described["options"] = [
                {"key": o.key, "text": o.text[locale]} for o in question.options
            ]
        questions.append(described)
    return {
        "title": definition.title[locale],
        "locale": locale,
        "version": opened.invitation.version,
        "expires_at": opened.invitation.expires_at.isoformat(),
        "questions": questions,
    }


@get("/respond/{tenant_id:uuid}/{token:str}")
async def show_form(
    request: Request[Any, Any, Any], tenant_id: FromPath[uuid.UUID], token: FromPath[str]
) -> HttpResponse[Any]:
    return await _handle(request, tenant_id, token, submit=False)


@post("/respond/{tenant_id:uuid}/{token:str}")
async def submit_form(
    request: Request[Any, Any, Any], tenant_id: FromPath[uuid.UUID], token: FromPath[str]
) -> HttpResponse[Any]:
    return await _handle(request, tenant_id, token, submit=True)
