"""The core, registered as the always-enabled plugin ``core``: its scopes and jobs go
through the same hooks as every plugin's."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from crmkit.core.customers import graphql as customers_graphql
from crmkit.core.hookspecs import hookimpl
from crmkit.jobs import delivery
from crmkit.plugins.info import CronSpec, JobSpec, PluginInfo, Scope
from crmkit.version import __version__

plugin_info = PluginInfo(
    name="core",
    version=__version__,
    description="Customers, activities, consent and audit.",
    requires=f"=={__version__}",
    migrations=Path(__file__).parent.parent / "migrations" / "versions",
)


@hookimpl
def register_scopes() -> Iterable[Scope]:
    return [
        Scope(customers_graphql.READ, "Read customers and their tags and stage."),
        Scope(customers_graphql.WRITE, "Create, update and archive customers."),
        Scope(customers_graphql.ACTIVITIES_READ, "Read customers' activity timelines."),
        Scope(customers_graphql.ACTIVITIES_WRITE, "Record activities."),
    ]


@hookimpl
def register_jobs() -> Iterable[JobSpec | CronSpec]:
    return delivery.JOBS
