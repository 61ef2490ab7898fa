"""crmkit: what plugin authors import.

Everything a plugin needs is here or in :mod:`crmkit.core.hookspecs`; the rest of the
package may change between versions.
"""

from crmkit.clock import utcnow
from crmkit.core.audit.trail import UnauditedWrite
from crmkit.core.consent.models import (
    ConsentChannel,
    ConsentPurpose,
    ConsentSource,
    ConsentState,
    LegalBasis,
)
from crmkit.core.consent.service import allows as consent_allows
from crmkit.core.consent.service import allows_many as consent_allows_many
from crmkit.core.consent.service import record_consent
from crmkit.core.customers.disclosure import disclose, personal_field
from crmkit.core.customers.graphql import CustomerFilterInput
from crmkit.core.customers.models import (
    Activity,
    ActivityKind,
    Channel,
    Customer,
    CustomerKind,
    LifecycleStage,
)
from crmkit.core.customers.pages import CustomerRow, customer_ids, customer_rows
from crmkit.core.customers.personal import InformationClass
from crmkit.core.customers.personal_columns import PersonalText, read_rows, sealed_rows
from crmkit.core.customers.service import (
    CustomerFilter,
    create_customer,
    get_customer,
    get_customers,
    list_customers,
    record_activity,
    update_customer,
)
from crmkit.core.events import DomainEvent, emit
from crmkit.core.hookspecs import event_hookspec, hookimpl, hookspec
from crmkit.db import Model, TenantOwned, TenantSession, customer_key, uuid7
from crmkit.errors import (
    BadUserInput,
    Conflict,
    ConsentRequired,
    CrmError,
    Forbidden,
    NotFound,
    PermanentJobError,
    PluginNotEnabled,
    RateLimited,
    Unauthenticated,
)
from crmkit.graphql.context import Info, RequestContext, rows_by_key
from crmkit.graphql.contrib import GraphQLContribution, customer_field, field
from crmkit.graphql.pagination import Connection, connection, decode_cursor, page_size
from crmkit.http.plugin_routes import error_status, plugin_scope, rate_limit
from crmkit.migrations.rls import disable_tenant_rls, enable_tenant_rls
from crmkit.plugins.caller import TenantHooks
from crmkit.plugins.info import CronSpec, JobSpec, PluginInfo, Scope, TenantContext
from crmkit.principal import Principal
from crmkit.tenants.users import Role
from crmkit.version import __version__

__all__ = [
    "Activity",
    "ActivityKind",
    "BadUserInput",
    "Channel",
    "Conflict",
    "Connection",
    "ConsentChannel",
    "ConsentPurpose",
    "ConsentRequired",
    "ConsentSource",
    "ConsentState",
    "CrmError",
    "CronSpec",
    "Customer",
    "CustomerFilter",
    "CustomerFilterInput",
    "CustomerKind",
    "CustomerRow",
    "DomainEvent",
    "Forbidden",
    "GraphQLContribution",
    "Info",
    "InformationClass",
    "JobSpec",
    "LegalBasis",
    "LifecycleStage",
    "Model",
    "NotFound",
    "PermanentJobError",
    "PersonalText",
    "PluginInfo",
    "PluginNotEnabled",
    "Principal",
    "RateLimited",
    "RequestContext",
    "Role",
    "Scope",
    "TenantContext",
    "TenantHooks",
    "TenantOwned",
    "TenantSession",
    "UnauditedWrite",
    "Unauthenticated",
    "__version__",
    "connection",
    "consent_allows",
    "consent_allows_many",
    "create_customer",
    "customer_field",
    "customer_ids",
    "customer_key",
    "customer_rows",
    "decode_cursor",
    "disable_tenant_rls",
    "disclose",
    "emit",
    "enable_tenant_rls",
    "error_status",
    "event_hookspec",
    "field",
    "get_customer",
    "get_customers",
    "hookimpl",
    "hookspec",
    "list_customers",
    "page_size",
    "personal_field",
    "plugin_scope",
    "rate_limit",
    "read_rows",
    "record_activity",
    "record_consent",
    "rows_by_key",
    "sealed_rows",
    "update_customer",
    "utcnow",
    "uuid7",
]
