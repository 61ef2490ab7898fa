"""The context every resolver gets as ``info.context``."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import strawberry
from strawberry.dataloader import DataLoader

from crmkit.db import TenantSession
from crmkit.graphql.pagination import decode_cursor, page_size
from crmkit.plugins.caller import TenantHooks
from crmkit.plugins.info import TenantContext
from crmkit.principal import Principal

if TYPE_CHECKING:
    from crmkit.settings import Settings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchLoad = Callable[["RequestContext", Sequence[Any]], Awaitable[Sequence[Any]]]


@dataclass
class RequestContext:
    """One GraphQL request: who calls, the tenant's session and hooks, data loaders.

    The whole operation is one transaction in ``session``.
    """

    principal: Principal
    session: TenantSession
    hooks: TenantHooks
    settings: Settings
    request_id: str
    disclosures: dict[str, tuple[set[uuid.UUID], set[str]]] = field(default_factory=dict)
    """Personal data shown in clear, by target type: (ids, field names), for the access log."""
    _loaders: dict[BatchLoad, DataLoader[Any, Any]] = field(default_factory=dict)
    _loaded: dict[BatchLoad, dict[Any, Any]] = field(default_factory=dict)

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.principal.tenant_id

    @property
    def tenant(self) -> TenantContext:
        """The core's tenant context (no plugin settings)."""
        return self.hooks.ctx

    def tenant_context(self, plugin: str) -> TenantContext:
        """A plugin's tenant context, with that plugin's settings."""
        return self.hooks.context_for(plugin)

    def page(self, first: int | None, after: str | None) -> tuple[int, uuid.UUID | None]:
        """A connection's page size (checked against the cap) and the id its cursor
        names; fetch ``size + 1`` rows and hand them to :func:`crmkit.connection`."""
        size = page_size(first, self.settings.page_size_default, self.settings.page_size_max)
        return size, decode_cursor(after) if after else None

    def record_disclosure(self, target_type: str, target_id: uuid.UUID, field_name: str) -> None:
        """Note that ``field_name`` of ``target_id`` goes out unmasked; the request leaves
        one access-log event for all it disclosed."""
        shown = self.disclosures.get(target_type)
        if shown is None:
            shown = self.disclosures[target_type] = (set(), set())
        ids, names = shown
        ids.add(target_id)
        names.add(field_name)

    def load(self, batch: BatchLoad, key: Any) -> Awaitable[Any]:
        """Load ``key`` through this request's data loader for ``batch``.

        ``batch(context, keys)`` returns one value per key, in order; keys requested
        while the same resolution step runs are loaded together in one call.
        """
        loader = self._loaders.get(batch)
        if loader is None:
            loader = self._loaders[batch] = DataLoader(load_fn=lambda keys: batch(self, keys))
        return loader.load(key)

    async def prefetch(self, batch: BatchLoad, keys: Sequence[Any]) -> None:
        """Load ``keys`` through ``batch`` now, in one call, for :meth:`batched` to answer
        without awaiting (a ``crmkit.customer_field`` on a page of customers)."""
        values = await batch(self, keys)
        if len(values) != len(keys):
            raise ValueError(f"{batch.__qualname__} returned {len(values)} values for {len(keys)} keys")
        self._loaded.setdefault(batch, {}).update(zip(keys, values, strict=True))

    def batched(self, batch: BatchLoad, key: Any) -> Any:
        """``key``'s value if :meth:`prefetch` loaded it, else an awaitable through :meth:`load`."""
        loaded = self._loaded.get(batch)
        if loaded is not None and key in loaded:
            return loaded[key]
        return self.load(batch, key)


def rows_by_key(rows: Iterable[V], key: Callable[[V], K], keys: Sequence[K]) -> list[list[V]]:
    """The rows of each key, in the keys' order and in the rows' order within a key:
    what a batch loader of a one-to-many field returns (a customer's notes, a case's
    links) from the one query that read them all."""
    grouped: defaultdict[K, list[V]] = defaultdict(list)
    for row in rows:
        grouped[key(row)].append(row)
    return [grouped.get(k, []) for k in keys]


Info = strawberry.Info[RequestContext, None]
"""The type of a resolver's ``info`` argument: ``info.context`` is the RequestContext."""
