"""The inbound route providers call: delivery reports and customers' replies, signed
with the tenant's ``callback_secret`` as Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import crmkit
from litestar import Request, post
from litestar.params import FromPath
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from crmkit_channels import service
from crmkit_channels.models import Message
from crmkit_channels.settings import ChannelsSettings


@post("/inbound/{tenant_id:uuid}", status_code=200)
async def inbound(
    request: Request[Any, Any, Any], tenant_id: FromPath[uuid.UUID]
) -> dict[str, Any]:
    """``{"type": "status", "message_id", "status": "delivered"|"bounced", "error"}`` or
    ``{"type": "reply", "id", "channel": "sms"|"email", "from", "text", "in_reply_to"}``."""
    client = request.client.host if request.client else "unknown"
    await crmkit.rate_limit(request, f"inbound:{client}", per_minute=600)
    body = await request.body()
    async with crmkit.plugin_scope(request, tenant_id) as ctx:
        secret = ctx.settings_as(ChannelsSettings).callback_secret
        if secret is None:
            raise crmkit.NotFound("not found")
        try:
            Webhook(secret.get_secret_value()).verify(body, dict(request.headers))
        except WebhookVerificationError:
            raise crmkit.Unauthenticated("bad signature") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise crmkit.BadUserInput("the body is not JSON") from None
        if not isinstance(data, dict):
            raise crmkit.BadUserInput("the body is not a JSON object")
        if data.get("type") == "status":
            message = await service.provider_status(
                ctx, _uuid(data.get("message_id")), str(data.get("status")), data.get("error")
            )
            return {"message_id": str(message.id), "status": message.status.value}
        if data.get("type") == "reply":
            channel = str(data.get("channel"))
            if channel not in ("sms", "email"):
                raise crmkit.BadUserInput("channel must be sms or email", field="channel")
            customer = await service.customer_by_address(ctx, channel, str(data.get("from") or ""))
            if customer is None:
                raise crmkit.NotFound("no customer with that address")
            replied = data.get("in_reply_to")
            original = (
                await ctx.session.get(Message, (ctx.tenant_id, _uuid(replied))) if replied else None
            )
            reply = await service.record_reply(
                ctx,
                customer_id=customer.id,
                channel=channel,
                text=str(data.get("text") or ""),
                in_reply_to=original if original and original.customer_id == customer.id else None,
                external_ref=f"{channel}:{request.headers.get('webhook-id')}",
            )
            return {"message_id": str(reply.id), "opt_out": reply.reason == "opt-out"}
        raise crmkit.BadUserInput("type must be status or reply", field="type")


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise crmkit.BadUserInput("not a message id", field="message_id") from None


ROUTES = [inbound]
