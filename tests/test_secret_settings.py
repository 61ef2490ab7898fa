"""Secret plugin settings (``SecretStr`` fields): sealed under the tenant key at rest,
in clear for the plugin, masked wherever crmkit shows settings."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from sqlalchemy import text

from crmkit.crypto import DecryptionError, TenantKeys
from crmkit.platform import enablement
from crmkit.platform.report import plugin_report
from crmkit.testing import Env
from tests import recorder_plugin

SECRET = "gw-key-7f3a9c"


async def stored_settings(env: Env, tenant: uuid.UUID) -> str:
    """The tenant's plugin rows as a database dump shows them."""
    async with env.owner_engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM tenant_plugins"))
        return repr([row for row in rows.all() if str(tenant).replace("-", "") in repr(row).replace("-", "")])


async def test_a_secret_setting_is_sealed_at_rest_clear_for_the_plugin_and_masked_when_shown(
    env: Env,
) -> None:
    tenant = await env.tenant()
    shown = await enablement.enable(
        env.platform, str(tenant), "recorder", {"gateway_key": SECRET, "threshold": 7}
    )
    assert shown["gateway_key"] == "**********" and shown["threshold"] == 7

    dump = await stored_settings(env, tenant)
    assert "recorder" in dump and SECRET not in dump  # the row is there; the key is not in clear

    async with env.platform.tenant_scope(tenant) as scope:
        settings = scope.hooks.context_for("recorder").settings_as(recorder_plugin.RecorderSettings)
    assert settings.gateway_key is not None and settings.gateway_key.get_secret_value() == SECRET

    # changing another setting keeps the secret; the hook sees it on both sides
    shown = await enablement.configure(env.platform, str(tenant), "recorder", {"label": "x"})
    assert shown["gateway_key"] == "**********"
    previous, current = recorder_plugin.calls(tenant, "plugin_settings_changed")[0]
    assert previous.gateway_key.get_secret_value() == current.gateway_key.get_secret_value() == SECRET
    assert SECRET not in await stored_settings(env, tenant)

    assert SECRET not in json.dumps(await plugin_report(env.platform), default=str)  # `plugins list --json`


def test_a_sealed_setting_opens_only_for_its_tenant_plugin_and_name() -> None:
    tenant = uuid.uuid4()
    keys = TenantKeys(tenant, os.urandom(32))
    sealed = keys.seal_setting("channels", "smtp_password", SECRET)
    assert keys.open_setting("channels", "smtp_password", sealed) == SECRET
    for other in (
        lambda: keys.open_setting("channels", "sms_api_key", sealed),
        lambda: keys.open_setting("surveys", "smtp_password", sealed),
        lambda: TenantKeys(tenant, os.urandom(32)).open_setting("channels", "smtp_password", sealed),
    ):
        with pytest.raises(DecryptionError):
            other()
