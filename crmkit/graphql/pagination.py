"""Relay-style cursor connections over time-ordered (UUIDv7) ids.

A cursor is an opaque encoding of the last id seen. It carries no tenant: another
tenant's cursor only positions a query that still sees the caller's own rows.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import strawberry

from crmkit.errors import BadUserInput

T = TypeVar("T")
_PREFIX = b"c1:"


def encode_cursor(id_: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(_PREFIX + id_.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if raw.startswith(_PREFIX) and len(raw) == len(_PREFIX) + 16:
            return uuid.UUID(bytes=raw[len(_PREFIX) :])
    except (binascii.Error, ValueError):
        pass
    raise BadUserInput("the cursor is malformed; pass an endCursor from a previous page", field="after")


def page_size(first: int | None, default: int, maximum: int) -> int:
    if first is None:
        return default
    if not 1 <= first <= maximum:
        raise BadUserInput(f"first must be between 1 and {maximum}", field="first")
    return first


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    nodes: list[T]
    page_info: PageInfo
    cursor_of: strawberry.Private[Callable[[T], str]]

    @strawberry.field
    def edges(self) -> list[Edge[T]]:
        """Each node with its cursor, made only when asked for (a page read as ``nodes``
        encodes one cursor, its end's)."""
        return [Edge(cursor=self.cursor_of(n), node=n) for n in self.nodes]


def id_cursor(node: Any) -> str:
    return encode_cursor(node.id)


def connection(rows: Sequence[T], size: int, cursor_of: Callable[[T], str] = id_cursor) -> Connection[T]:
    """Build a page from ``size + 1`` fetched rows (the extra one says a next page exists).

    Rows are keyed by their UUIDv7 ``id`` unless ``cursor_of`` says otherwise.
    """
    nodes = list(rows[:size])
    return Connection(
        nodes=nodes,
        page_info=PageInfo(
            has_next_page=len(rows) > size,
            end_cursor=cursor_of(nodes[-1]) if nodes else None,
        ),
        cursor_of=cursor_of,
    )
