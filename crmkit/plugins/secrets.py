"""Secret plugin settings: a settings field typed ``pydantic.SecretStr`` (or
``SecretStr | None``) holds a credential (an SMTP password, a gateway's API key).

Such a value is stored encrypted under the tenant's key (:meth:`TenantKeys.seal_setting`),
so a database dump shows no credential; the plugin reads it in clear through
``ctx.settings`` (``settings.password.get_secret_value()``); and what crmkit shows of
settings (``crmkit plugins enable/configure``, the operator API) prints it as
``**********``, pydantic's own mask. No query returns it.
"""

from __future__ import annotations

import base64
import functools
import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr

from crmkit.crypto import TenantKeys

SEALED = "sealed"
"""The stored form of a secret value: ``{"sealed": "<base64 ciphertext>"}``."""


@functools.cache
def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s fields typed ``SecretStr`` or ``SecretStr | None``."""
    names = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            members: tuple[Any, ...] = typing.get_args(annotation)
        else:
            members = (annotation,)
        if SecretStr in members:
            names.add(name)
    return frozenset(names)


def seal(keys: TenantKeys, plugin: str, settings: BaseModel) -> dict[str, Any]:
    """The validated ``settings`` as stored: JSON, secret fields sealed."""
    stored = settings.model_dump(mode="json")
    for name in secret_fields(type(settings)):
        value = getattr(settings, name)
        if value is not None:
            sealed = keys.seal_setting(plugin, name, value.get_secret_value())
            stored[name] = {SEALED: base64.b64encode(sealed).decode("ascii")}
    return stored


def unseal(keys: TenantKeys, plugin: str, model: type[BaseModel], stored: dict[str, Any]) -> dict[str, Any]:
    """Stored settings with their secret fields opened, ready to validate with ``model``."""
    names = secret_fields(model)
    if not names:
        return stored
    opened = dict(stored)
    for name in names:
        value = stored.get(name)
        if isinstance(value, dict) and SEALED in value:
            opened[name] = keys.open_setting(plugin, name, base64.b64decode(value[SEALED]))
    return opened


def shown(settings: BaseModel | None) -> dict[str, Any]:
    """The settings as crmkit shows them: secrets masked (``**********``)."""
    return settings.model_dump(mode="json") if settings is not None else {}
