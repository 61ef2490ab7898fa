"""Redis for the benchmarks: a database of the local server that no other run holds.

A run claims one of databases 13..1 by setting a key in it (NX, as crmkit's tests
do), empties it, and empties it again when it releases it; a benchmark skips its Redis
figures when no database is free or the server is not reachable.
"""

from __future__ import annotations

import asyncio
import os

CLAIM = "crmkit:scale-out:claim"
"""The key a run sets (NX) in a Redis database to hold it, as crmkit's tests do."""
REDIS_BASE = os.environ.get("CRMKIT_BENCH_REDIS", "redis://127.0.0.1:6379")


async def claim_redis() -> str | None:
    import redis.asyncio as redis

    for number in range(13, 0, -1):
        client = redis.from_url(f"{REDIS_BASE}/{number}")
        try:
            if await asyncio.wait_for(client.set(CLAIM, os.getpid(), nx=True, ex=3600), 3):
                await client.flushdb()
                await client.set(CLAIM, os.getpid(), ex=3600)
                return f"{REDIS_BASE}/{number}"
        except (OSError, TimeoutError) as exc:
            print(f"Redis skipped: {exc}")
            return None
        finally:
            await client.aclose()
    print("Redis skipped: every database this benchmark may use is claimed")
    return None


async def release_redis(url: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(url)
    try:
        if await client.get(CLAIM) == str(os.getpid()).encode():
            await client.flushdb()
    finally:
        await client.aclose()
