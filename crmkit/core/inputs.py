"""Checks of plain input values, shared by the core's services: each refusal is a
BAD_USER_INPUT naming the field, with a message a person can act on."""

from __future__ import annotations

from crmkit.errors import BadUserInput


def optional_text(value: str | None, field: str, max_len: int) -> str | None:
    """Trimmed text, None when absent or blank; refused when longer than ``max_len``."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > max_len:
        raise BadUserInput(f"{field} is longer than {max_len} characters", field=field)
    return value


def required_text(value: str, field: str, max_len: int) -> str:
    """Trimmed text that must not be blank."""
    text = optional_text(value, field, max_len)
    if text is None:
        raise BadUserInput(f"{field} must not be empty", field=field)
    return text
