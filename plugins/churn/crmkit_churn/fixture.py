"""A seeded population of customers with a known set of declining ones: what the tests
measure the default rules' precision and recall on, and what the benchmark scores.

Each customer gets a profile and, from it, a history of transactions and logins over
the two periods the score compares (and, with ``history_days``, more before them):

* ``steady``: about the same in both periods (a factor of 0.75-1.3);
* ``dip``: a healthy customer whose current period is quiet (0.3-0.6), still active
  lately: the false alarms a frequency rule invites;
* ``declining``: the current period falls to 0-0.35 of the previous one and activity
  stops 15-60 days before now: the customers to flag;
* ``fading``: declining gently (0.4-0.6) and still active: the ones rules miss.

``dip`` and ``fading`` exist only with ``ambiguous=True``; without them the flagged set
is exactly the declining one, which the statement-count test needs. The same seed gives
the same rows.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import crmkit

PERIOD = timedelta(days=90)
"""The settings' default ``period_days``: the fixture's histories follow it."""


@dataclass(frozen=True)
class Profile:
    kind: str
    tx_rate: float
    """Transactions per period before the change."""
    login_rate: float
    factor: float
    """The current period's share of the previous one."""
    stop_days: float | None
    """Days before now of the last activity (``None``: active until now)."""
    complaints: int

    @property
    def declining(self) -> bool:
        return self.kind in ("declining", "fading")


def profiles(
    customers: int, declining: int, *, seed: int = 7, ambiguous: bool = True
) -> list[Profile]:
    """``customers`` profiles, ``declining`` of them declining (a seventh of those
    fading when ``ambiguous``), the rest steady (3% dips when ``ambiguous``)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    fading = declining // 7 if ambiguous else 0
    kinds = ["declining"] * (declining - fading) + ["fading"] * fading
    for _ in range(customers - declining):
        kinds.append("dip" if ambiguous and rng.random() < 0.03 else "steady")
    rng.shuffle(kinds)
    result = []
    for kind in kinds:
        factor, stop = {
            "steady": (rng.uniform(0.75, 1.3), None),
            "dip": (rng.uniform(0.3, 0.6), None),
            "declining": (rng.uniform(0.0, 0.35), rng.uniform(15, 60)),
            "fading": (rng.uniform(0.4, 0.6), None),
        }[kind]
        complaints = 1 if rng.random() < 0.05 else 0
        result.append(
            Profile(kind, rng.uniform(6, 14), rng.uniform(4, 10), factor, stop, complaints)
        )
    return result


def _count(rng: random.Random, mean: float) -> int:
    return max(0, round(rng.gauss(mean, math.sqrt(mean)))) if mean > 0 else 0


def activities(
    tenant_id: uuid.UUID,
    customer_ids: list[uuid.UUID],
    population: list[Profile],
    now: datetime,
    *,
    seed: int = 7,
    history_days: int = 0,
) -> list[dict[str, Any]]:
    """The rows of ``crmkit.Activity``'s table for each customer by their profile:
    transactions with amounts (EUR), logins and complaints."""
    rng = random.Random(seed + 1)  # noqa: S311 - test data, not security
    rows: list[dict[str, Any]] = []
    earlier = math.ceil(history_days / PERIOD.days)
    for customer_id, profile in zip(customer_ids, population, strict=True):

        def add(
            kind: crmkit.ActivityKind,
            start: datetime,
            end: datetime,
            amount: bool,
            customer_id: uuid.UUID = customer_id,
        ) -> None:
            seconds = (end - start).total_seconds()
            if seconds <= 0:
                return
            at = start + timedelta(seconds=rng.uniform(0, seconds))
            rows.append(
                {
                    "tenant_id": tenant_id,
                    "id": crmkit.uuid7(),
                    "customer_id": customer_id,
                    "kind": kind.value,
                    "channel": crmkit.Channel.APP.value,
                    "amount": Decimal(rng.randint(2000, 30000)).scaleb(-2) if amount else None,
                    "currency": "EUR" if amount else None,
                    "occurred_at": at,
                    "attributes": {},
                    "created_at": now,
                }
            )

        current_start = now - PERIOD
        end = now - timedelta(days=profile.stop_days) if profile.stop_days is not None else now
        for back in range(1, earlier + 2):  # the previous period and any history before it
            start = current_start - back * PERIOD
            for _ in range(_count(rng, profile.tx_rate)):
                add(crmkit.ActivityKind.TRANSACTION, start, start + PERIOD, True)
            for _ in range(_count(rng, profile.login_rate)):
                add(crmkit.ActivityKind.LOGIN, start, start + PERIOD, False)
        for _ in range(_count(rng, profile.tx_rate * profile.factor)):
            add(crmkit.ActivityKind.TRANSACTION, current_start, end, True)
        for _ in range(_count(rng, profile.login_rate * profile.factor)):
            add(crmkit.ActivityKind.LOGIN, current_start, end, False)
        for _ in range(profile.complaints):
            add(crmkit.ActivityKind.COMPLAINT, now - timedelta(days=80), now, False)
    return rows


def churners(population: list[Profile], *, seed: int = 7, noise: float = 0.03) -> list[bool]:
    """Who leaves after the fixture's ``now``, for the model's labelled history: every
    declining customer (fading ones included), and a share ``noise`` of the others,
    who leave with no sign beforehand."""
    rng = random.Random(seed + 2)  # noqa: S311 - test data, not security
    return [profile.declining or rng.random() < noise for profile in population]


def continuation(
    tenant_id: uuid.UUID,
    customer_ids: list[uuid.UUID],
    leaving: list[bool],
    since: datetime,
    now: datetime,
    *,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """The activities after ``since`` up to ``now``: a few transactions for each customer
    who stays, nothing for those ``leaving``."""
    rng = random.Random(seed + 3)  # noqa: S311 - test data, not security
    span = (now - since).total_seconds()
    return [
        {
            "tenant_id": tenant_id,
            "id": crmkit.uuid7(),
            "customer_id": customer_id,
            "kind": crmkit.ActivityKind.TRANSACTION.value,
            "channel": crmkit.Channel.APP.value,
            "amount": Decimal(rng.randint(2000, 30000)).scaleb(-2),
            "currency": "EUR",
            "occurred_at": since + timedelta(seconds=rng.uniform(1, span)),
            "attributes": {},
            "created_at": now,
        }
        for customer_id, leaves in zip(customer_ids, leaving, strict=True)
        if not leaves
        for _ in range(rng.randint(1, 4))
    ]
