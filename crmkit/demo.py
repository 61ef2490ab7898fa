"""The ``demo-bank`` tenant: sample customers and activities, every plugin enabled."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from graphql import GraphQLField, GraphQLObjectType, get_named_type, is_required_argument
from sqlalchemy import func, select

from crmkit.clock import utcnow
from crmkit.core.customers import service
from crmkit.core.customers.models import (
    ActivityKind,
    Channel,
    Customer,
    CustomerKind,
    LifecycleStage,
)
from crmkit.errors import NotFound
from crmkit.platform import Platform, enablement
from crmkit.platform.lifecycle import onboard
from crmkit.platform.operator_tokens import issue_for_tenant
from crmkit.plugins.info import TenantContext
from crmkit.tenants.service import get_tenant

SLUG = "demo-bank"
GIVEN = [
    "Ada",
    "Bea",
    "Chen",
    "Dara",
    "Emil",
    "Farah",
    "Goran",
    "Hana",
    "Ivo",
    "Jun",
    "Kemal",
    "Lena",
]
FAMILY = ["Novak", "Okafor", "Park", "Quist", "Rossi", "Sato", "Tan", "Urban", "Vidal", "Weber"]
COMPANIES = ["Northwind Traders", "Blue Harbour Logistics", "Kestrel Farms", "Orbit Dental"]
TAGS = ["premium", "mortgage", "savings", "sme", "student", "private-banking"]


@dataclass(frozen=True)
class Demo:
    token: str
    first_query: str


async def setup_demo(platform: Platform, customers: int = 24) -> Demo:
    """Idempotent and complete: the first run onboards demo-bank with every installed
    plugin; each later run enables the installed plugins it lacks (installed since, or
    disabled) and only those, and keeps its data. Returns a 24-hour token and a first
    query that shows the plugins' ``Customer`` fields too."""
    try:
        tenant = await get_tenant(platform.db, SLUG)
        enabled_now: set[str] = set()
    except NotFound:
        plugins: dict[str, dict[str, Any]] = {plugin: {} for plugin in platform.registry.names}
        tenant = (await onboard(platform, SLUG, "Demo Bank", plugins)).tenant
        enabled_now = set(plugins)
    async with platform.tenant_scope(tenant.id) as scope:
        for plugin in sorted(set(platform.registry.names) - scope.state.plugins):
            await enablement.enable_in(platform, scope, plugin)
            enabled_now.add(plugin)
    async with platform.tenant_scope(tenant.id) as scope:
        existing = await scope.session.scalar(select(func.count()).select_from(Customer))
        if not existing:
            await _sample(scope.ctx, customers)
    if enabled_now:
        await _seed_plugins(platform, tenant.id, sorted(enabled_now))
    if hasattr(platform.queue, "drain"):
        await platform.queue.drain()
    token = await issue_for_tenant(platform, SLUG, None, subject="operator:demo", minutes=24 * 60)
    return Demo(token, first_query(platform, frozenset(platform.registry.names)))


async def _seed_plugins(platform: Platform, tenant_id: uuid.UUID, plugins: list[str]) -> None:
    """Each newly enabled plugin adds its sample data (``seed_demo``), in one transaction,
    after the core's events reached it (a plugin may build on them: points earned)."""
    if hasattr(platform.queue, "drain"):
        await platform.queue.drain()
    async with platform.tenant_scope(tenant_id) as scope:
        ids = list(await scope.session.scalars(select(Customer.id).order_by(Customer.id)))
        for plugin in plugins:
            await scope.hooks.call_plugin(plugin, "seed_demo", customer_ids=ids)


def first_query(platform: Platform, plugins: frozenset[str]) -> str:
    """A customers query selecting core fields and every plugin field on ``Customer``,
    read from the schema rather than known by name."""
    return "{ customers(first: 5) { nodes { " + customer_selection(platform, plugins) + " } } }"


def customer_selection(platform: Platform, plugins: frozenset[str]) -> str:
    """A ``Customer`` selection: a few core fields and every field the ``plugins``
    add, each with its leaves and nested objects (connections' ``nodes`` included)
    down to two levels; fields that need arguments are left out."""
    schema = platform.schemas.for_plugins(plugins)
    customer = schema._schema.get_type("Customer")
    assert isinstance(customer, GraphQLObjectType)
    selections = ["displayName", "lifecycleStage", "tags"]
    for (type_name, name), _plugin in platform.schemas.types.plugin_of_field.items():
        if type_name == "Customer" and name in customer.fields:
            selections.append(_select(name, customer.fields[name], depth=2))
    return " ".join(s for s in selections if s)


def _select(name: str, field: GraphQLField, depth: int) -> str:
    if any(is_required_argument(argument) for argument in field.args.values()):
        return ""
    inner = get_named_type(field.type)
    if not isinstance(inner, GraphQLObjectType):
        return name
    if depth == 0:
        return ""
    parts = [_select(child, f, depth - 1) for child, f in inner.fields.items()]
    parts = [part for part in parts if part]
    return f"{name} {{ {' '.join(parts)} }}" if parts else ""


async def _sample(ctx: TenantContext, count: int) -> None:
    rng = random.Random(7)  # noqa: S311  (the same demo every time; not security)
    stages = list(LifecycleStage)
    now = utcnow()
    for i in range(count):
        if i % 6 == 5:
            customer = await service.create_customer(
                ctx,
                kind=CustomerKind.ORGANISATION,
                organisation_name=COMPANIES[(i // 6) % len(COMPANIES)],
                email=f"office{i}@example.com",
                tags=["sme"],
                lifecycle_stage=rng.choice(stages),
                external_ref=f"demo-{i}",
            )
        else:
            given, family = rng.choice(GIVEN), rng.choice(FAMILY)
            customer = await service.create_customer(
                ctx,
                kind=CustomerKind.PERSON,
                given_name=given,
                family_name=family,
                email=f"{given.lower()}.{family.lower()}{i}@example.com",
                phone=f"+4420790{i:05d}",
                tags=rng.sample(TAGS, 2),
                lifecycle_stage=rng.choice(stages),
                relationship_manager=rng.choice(["r.mills", "s.ito", None]),
                external_ref=f"demo-{i}",
            )
        for j in range(3):
            await service.record_activity(
                ctx,
                customer_id=customer.id,
                kind=ActivityKind.TRANSACTION if j else ActivityKind.LOGIN,
                channel=rng.choice([Channel.APP, Channel.WEB, Channel.BRANCH]),
                occurred_at=now - timedelta(days=rng.randint(1, 400)),
                amount=Decimal(rng.randint(5, 5000)) if j else None,
                currency="EUR" if j else None,
                external_ref=f"demo-{i}-{j}",
            )
