"""Checks of plain input values, shared by the core's services and the GraphQL edge:
each refusal is a BAD_USER_INPUT naming the field, with a message a person can act on."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmkit.errors import BadUserInput

E = TypeVar("E", bound=StrEnum)


def unstorable(value: str) -> str | None:
    """Why no database can store ``value`` as text, or None when it can.

    PostgreSQL's text refuses NUL, and a lone surrogate (a JSON ``"\\ud800"``) is no
    character at all: it cannot be encoded as UTF-8 for any driver. Both would fail
    at the database, after the request had been accepted.
    """
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (\\ud800-\\udfff), which is not a character"
    return None


def storable_text(value: str, field: str) -> str:
    """``value``, refused when :func:`unstorable`."""
    reason = unstorable(value)
    if reason is not None:
        raise BadUserInput(f"{field} {reason}", field=field)
    return value


def optional_text(value: str | None, field: str, max_len: int) -> str | None:
    """Trimmed text, None when absent or blank; refused when longer than ``max_len``
    or not storable."""
    if value is None:
        return None
    value = storable_text(value, field).strip()
    if not value:
        return None
    if len(value) > max_len:
        raise BadUserInput(f"{field} is longer than {max_len} characters", field=field)
    return value


def optional_time_zone(value: str | None, field: str) -> str | None:
    """An IANA time zone name (``Europe/Paris``), None when absent or blank; refused
    when no zone has that name."""
    name = optional_text(value, field, 64)
    if name is not None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadUserInput(
                f"{field} {name!r} is not a time zone: use an IANA name such as Europe/Paris", field=field
            ) from None
    return name


def required_text(value: str, field: str, max_len: int) -> str:
    """Trimmed text that must not be blank."""
    text = optional_text(value, field, max_len)
    if text is None:
        raise BadUserInput(f"{field} must not be empty", field=field)
    return text


def decimal_digits(value: Decimal) -> tuple[int, int]:
    """The digits of a finite ``value`` written out, before and after the decimal
    point, trailing zeros of the fraction left out: 12.50 -> (2, 1), 1E+3 -> (4, 0),
    0.001 -> (0, 3). Computed from the exponent, so 1E+999999999 costs nothing."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int), "a finite Decimal"
    if not any(digits):
        return (0, 0)
    length = len(digits)
    while exponent < 0 and digits[length - 1] == 0:
        length -= 1
        exponent += 1
    return (max(length + exponent, 0), max(-exponent, 0))


def enum_value(enum_cls: type[E], value: E | str, field: str) -> E:
    """``value`` as a member of ``enum_cls`` (by value), refused listing the allowed ones."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise BadUserInput(f"{field} must be one of: {allowed}", field=field) from None
