"""The job queue interface both backends implement, and the payload codec.

Payloads are msgpack (JSON's types plus bytes), never pickle: whoever can write to
Redis must not be able to run code in a worker.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import msgpack


def pack(value: Any) -> bytes:
    return msgpack.packb(value, datetime=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, timestamp=3)


class JobQueue(Protocol):
    async def enqueue(
        self,
        job: str,
        *,
        tenant_id: uuid.UUID,
        payload: dict[str, Any],
        job_id: str | None = None,
        defer_seconds: float = 0,
    ) -> None:
        """Queue ``job`` for ``tenant_id``. A ``job_id`` already queued is not queued twice."""
        ...

    async def close(self) -> None: ...
