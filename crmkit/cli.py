"""The ``crmkit`` command: the platform operator's tool."""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import shlex
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from crmkit.core.audit.trail import Actor, acting_as
from crmkit.errors import CrmError
from crmkit.platform import Platform
from crmkit.platform.operator_tokens import CLI_OPERATOR
from crmkit.settings import ConfigurationError, Settings, get_settings

T = TypeVar("T")

app = typer.Typer(help="crmkit: multi-tenant CRM platform.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations (core and every installed plugin).")
tenants_app = typer.Typer(help="Tenants (institutions).")
plugins_app = typer.Typer(help="Installed plugins and per-tenant enablement.")
token_app = typer.Typer(help="Access tokens.")
audit_app = typer.Typer(help="The tamper-evident audit trail.")
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")
app.add_typer(plugins_app, name="plugins")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
users_app = typer.Typer(help="A tenant's staff users.")
apps_app = typer.Typer(help="Partner apps (OAuth 2.0 clients).")
app.add_typer(users_app, name="users")
app.add_typer(apps_app, name="apps")


def fail(code: str, message: str) -> NoReturn:
    """Every refusal of the CLI: one line on stderr, exit code 2."""
    typer.secho(f"error ({code}): {message}", fg="red", err=True)
    raise typer.Exit(2)


def settings() -> Settings:
    """The platform settings; a bad ``CRMKIT_`` variable is a one-line refusal."""
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CRMKIT_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        fail("CONFIGURATION", problems)


def run(fn: Callable[[Platform], Awaitable[T]]) -> T:
    """Run ``fn`` with a platform, its acts attributed to the CLI; a CrmError or a
    configuration error becomes a one-line message and exit code 2."""
    platform_settings = settings()

    async def main() -> T:
        platform = Platform(platform_settings)
        try:
            with acting_as(Actor.from_subject(CLI_OPERATOR)):
                return await fn(platform)
        finally:
            await platform.close()

    try:
        return asyncio.run(main())
    except CrmError as exc:
        fail(exc.code, exc.message)
    except ConfigurationError as exc:
        fail("CONFIGURATION", str(exc))
    except SQLAlchemyError as exc:  # never the statement or its parameters: they hold data
        cause = type(getattr(exc, "orig", None) or exc).__name__
        fail("DATABASE", f"the database refused the command ({cause}); nothing was changed")


def ensure_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, before anything names it."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail("PORT_IN_USE", f"port {port} on {host} is in use ({exc.strerror}); choose another")


def parse_sets(values: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse, else as strings."""
    settings: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            fail("BAD_USER_INPUT", f"--set {item!r} is not key=value")
        try:
            settings[key] = json.loads(raw)
        except ValueError:
            settings[key] = raw
    return settings


# --- serving ------------------------------------------------------------------------


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="Processes (with CRMKIT_REDIS_URL set only)."),
) -> None:
    """Serve the API (GraphQL at /graphql)."""
    import uvicorn

    try:
        settings().check_issuer()
    except ConfigurationError as exc:
        fail("CONFIGURATION", str(exc))
    ensure_port_free(host, port)
    uvicorn.run("crmkit.app:create_app", factory=True, host=host, port=port, workers=workers)


@app.command()
def worker() -> None:
    """Run the arq worker: plugins' jobs, event delivery and cron (needs CRMKIT_REDIS_URL)."""
    from arq.worker import Worker

    from crmkit.app import settle_collector
    from crmkit.jobs.backends import worker_settings

    platform_settings = settings()
    if not platform_settings.redis_url:
        fail("CONFIGURATION", "set CRMKIT_REDIS_URL; without Redis jobs run inside `crmkit serve`")
    platform = Platform(platform_settings)
    # as the server does: jobs allocate as requests do (channels' send job of 50 SMS
    # crossed 700 allocations about ten times), and each full collection scanned all
    # that start-up built: about a third of a campaign message's CPU was the collector's
    settle_collector(platform_settings.gc_gen0_threshold)
    Worker(**worker_settings(platform)).run()


# --- database -----------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(target: str = typer.Argument("heads")) -> None:
    """Apply migrations (default: the core's and every installed plugin's heads)."""
    from crmkit import migrations

    run(lambda p: migrations.upgrade_as_owner(p.settings, p.registry, target))
    typer.echo(f"database at {target}")


@db_app.command("downgrade")
def db_downgrade(
    target: str = typer.Argument(..., help="A revision, `PLUGIN@base`, or `base`."),
) -> None:
    """Revert migrations to ``target``."""
    from crmkit import migrations

    run(lambda p: migrations.downgrade_as_owner(p.settings, p.registry, target))
    typer.echo(f"database at {target}")


# --- tenants ------------------------------------------------------------------------


@tenants_app.command("create")
def tenants_create(
    slug: str,
    name: str,
    plugin: Annotated[list[str] | None, typer.Option(help="Enable this plugin (repeatable).")] = None,
    admin_email: Annotated[str | None, typer.Option(help="The first tenant admin's e-mail.")] = None,
    admin_name: Annotated[str, typer.Option(help="The first tenant admin's name.")] = "Tenant admin",
) -> None:
    """Onboard a tenant, with its first admin and plugins (configure them with `plugins configure`)."""
    from crmkit.platform.lifecycle import Admin, onboard

    admin = Admin(admin_email, admin_name) if admin_email else None
    done = run(lambda p: onboard(p, slug, name, {name_: {} for name_ in plugin or []}, admin))
    typer.echo(f"created tenant {done.tenant.slug} ({done.tenant.id})")
    if done.admin is not None:
        typer.echo(f"tenant admin {done.admin.email}, password (shown once): {done.admin_password}")


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants."""
    from crmkit.tenants.service import list_tenants

    for tenant in run(lambda p: list_tenants(p.db)):
        typer.echo(f"{tenant.slug}\t{tenant.status.value}\t{tenant.id}\t{tenant.name}")


@tenants_app.command("configure")
def tenants_configure(
    tenant: str,
    activity_retention_days: Annotated[
        int, typer.Option(help="Purge activities older than this many days; 0 keeps them.")
    ],
) -> None:
    """Change a tenant's settings."""
    from crmkit.platform.lifecycle import configure_retention

    run(lambda p: configure_retention(p, tenant, activity_retention_days or None))
    kept = f"{activity_retention_days} days" if activity_retention_days else "forever"
    typer.echo(f"{tenant}: activities kept {kept}")


@tenants_app.command("suspend")
def tenants_suspend(tenant: str) -> None:
    """Suspend a tenant: its tokens are refused from the next request on."""
    from crmkit.platform.lifecycle import suspend

    run(lambda p: suspend(p, tenant))
    typer.echo(f"suspended {tenant}")


@tenants_app.command("reactivate")
def tenants_reactivate(tenant: str) -> None:
    """Reactivate a suspended tenant."""
    from crmkit.platform.lifecycle import reactivate

    run(lambda p: reactivate(p, tenant))
    typer.echo(f"reactivated {tenant}")


@tenants_app.command("offboard")
def tenants_offboard(
    tenant: str,
    confirm: Annotated[str, typer.Option(help="Repeat the tenant's slug: this cannot be undone.")],
) -> None:
    """Purge a tenant's data and destroy its key (the audit trail stays)."""
    from crmkit.platform.lifecycle import offboard

    run(lambda p: offboard(p, tenant, confirm=confirm))
    typer.echo(f"offboarded {tenant}: data purged, key destroyed")


# --- plugins ------------------------------------------------------------------------


@plugins_app.command("list")
def plugins_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Installed plugins: version, compatibility, hooks, enabled tenants, recent failures."""
    from crmkit.platform.report import plugin_report

    report = run(plugin_report)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    for plugin in report["plugins"]:
        typer.echo(f"{plugin['name']} {plugin['version']}  (requires crmkit {plugin['requires']})")
        typer.echo(f"  {plugin['description']}")
        typer.echo(f"  hooks: {', '.join(plugin['hooks']) or '-'}")
        typer.echo(f"  enabled for: {', '.join(plugin['enabled_tenants']) or '-'}")
        _echo_failures(plugin["recent_failures"])
    for refused in report["refused"]:
        typer.secho(f"{refused['name']} REFUSED: {refused['reason']}", fg="red")
    if report["core_failures"]:
        typer.echo("core jobs (event dispatch, webhooks, retention):")
        _echo_failures(report["core_failures"])


def _echo_failures(failures: list[dict[str, Any]]) -> None:
    for failure in failures:
        gave_up = " (gave up)" if failure["gave_up"] else ""
        typer.echo(
            f"  failure {failure['occurred_at']} {failure['tenant']} {failure['job']} "
            f"try {failure['attempt']}{gave_up}: {failure['error']}"
        )


RESTART_NOTE = "a server or worker started before {plugin} was installed serves it only after a restart"
"""Plugins load when a process starts; the database accepts a newer one at once."""


def _settings_command(action: Callable[..., Awaitable[Any]], verb: str) -> Callable[..., None]:
    def command(
        tenant: str,
        plugin: str,
        set_: Annotated[list[str] | None, typer.Option("--set", help="key=value (repeatable)")] = None,
    ) -> None:
        values = parse_sets(set_ or [])
        stored = run(lambda p: action(p, tenant, plugin, values))
        typer.echo(f"{verb} {plugin} for {tenant}: {json.dumps(stored)}")
        typer.echo(f"note: {RESTART_NOTE.format(plugin=plugin)}")

    return command


def _register_plugin_commands() -> None:
    from crmkit.platform import enablement

    plugins_app.command("enable", help="Enable a plugin for a tenant, with settings.")(
        _settings_command(enablement.enable, "enabled")
    )
    plugins_app.command("configure", help="Change settings of a tenant's plugin.")(
        _settings_command(enablement.configure, "configured")
    )

    @plugins_app.command("purge")
    def purge(
        tenant: str,
        plugin: str,
        confirm: Annotated[str, typer.Option(help="Repeat the plugin's name: this cannot be undone.")],
    ) -> None:
        """Delete a disabled plugin's data of one tenant (audited)."""
        tables = run(lambda p: enablement.purge(p, tenant, plugin, confirm=confirm))
        typer.echo(f"purged {plugin} for {tenant}: {', '.join(tables) or 'no tables'}")

    @plugins_app.command("disable")
    def disable(tenant: str, plugin: str) -> None:
        """Disable a plugin for a tenant (its data is kept)."""
        run(lambda p: enablement.disable(p, tenant, plugin))
        typer.echo(f"disabled {plugin} for {tenant}")


_register_plugin_commands()


# --- tokens -------------------------------------------------------------------------


@token_app.command("issue")
def token_issue(
    tenant: Annotated[str, typer.Option(help="Tenant slug or id.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes.")] = "",
    all_scopes: Annotated[
        bool, typer.Option("--all-scopes", help="Every scope of the core and the tenant's plugins.")
    ] = False,
    subject: Annotated[str, typer.Option(help="Who the token speaks for.")] = CLI_OPERATOR,
    minutes: Annotated[
        int | None, typer.Option(help="Lifetime, 1 to 1440 (default: CRMKIT_ACCESS_TOKEN_MINUTES).")
    ] = None,
) -> None:
    """Print an access token for an active tenant (operator tool)."""
    from crmkit.platform.operator_tokens import issue_for_tenant

    wanted = None if all_scopes else [s.strip() for s in scopes.split(",") if s.strip()]
    token = run(lambda p: issue_for_tenant(p, tenant, wanted, subject=subject, minutes=minutes))
    typer.echo(token)


@token_app.command("operator")
def token_operator(
    name: Annotated[str, typer.Option(help="The operator's name, recorded in audit events.")],
    minutes: Annotated[
        int | None, typer.Option(help="Lifetime, 1 to 480 (default: CRMKIT_OPERATOR_TOKEN_MINUTES).")
    ] = None,
) -> None:
    """Print an operator token for /operator/graphql."""
    from crmkit.auth.tokens import TokenService
    from crmkit.platform.operator_tokens import OperatorTokens

    async def issue(p: Platform) -> str:
        return OperatorTokens(TokenService(p.settings)).issue(name, minutes=minutes)

    typer.echo(run(issue))


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="An operator or access token, or its jti.")],
    tenant: Annotated[
        str | None, typer.Option(help="The tenant (slug or id), for an access token's jti.")
    ] = None,
) -> None:
    """Revoke an operator token or an access token before it expires."""
    from crmkit.platform.operator_tokens import revoke_token

    typer.echo(f"revoked {run(lambda p: revoke_token(p, token, tenant))}")


# --- audit --------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(tenant: Annotated[str, typer.Option(help="Tenant slug or id.")]) -> None:
    """Check a tenant's chain and its latest signed checkpoint; exit 1 at the first bad link."""
    from crmkit.core.audit.chain import verify
    from crmkit.tenants.service import get_tenant

    async def check(p: Platform) -> Any:
        return await verify(p.db, (await get_tenant(p.db, tenant)).id, p.audit_signer)

    result = run(check)
    if result.ok:
        signed = f", signed checkpoint at {result.checkpoint_seq}" if result.checkpoint_seq else ""
        typer.echo(f"audit chain of {tenant} verified: {result.checked} events{signed}")
        return
    typer.secho(
        f"audit chain of {tenant} BROKEN at sequence number {result.first_bad_seq}: {result.reason}",
        fg="red",
        err=True,
    )
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(tenant: Annotated[str, typer.Option(help="Tenant slug or id.")]) -> None:
    """Sign the tenant's chain head now (the platform also does so periodically)."""
    from crmkit.core.audit.chain import checkpoint
    from crmkit.tenants.service import get_tenant

    async def sign(p: Platform) -> Any:
        tenant_id = (await get_tenant(p.db, tenant)).id
        async with p.db.tenant_session(tenant_id) as session:
            signed = await checkpoint(session, p.audit_signer)
            return signed.seq if signed else 0

    typer.echo(f"checkpoint of {tenant} at sequence number {run(sign)}")


# --- staff users and partner apps -------------------------------------------------


@users_app.command("create")
def users_create(
    tenant: Annotated[str, typer.Argument(help="Tenant slug or id.")],
    email: Annotated[str, typer.Argument()],
    role: Annotated[
        str,
        typer.Option(
            help="tenant_admin, relationship_manager, service_agent, analyst or compliance_officer."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Display name (default: the e-mail address).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin instead of generating one.")
    ] = False,
) -> None:
    """Create a staff user; prints the generated password (shown once) unless one is read from stdin."""
    from crmkit.errors import BadUserInput
    from crmkit.tenants.service import open_tenant
    from crmkit.tenants.users import Role, create_user

    try:
        wanted = Role(role)
    except ValueError:
        fail("BAD_USER_INPUT", f"unknown role {role!r} ({', '.join(r.value for r in Role)})")
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None

    async def create(p: Platform) -> Any:
        tenant_id = (await open_tenant(p.db, tenant)).id
        async with p.db.tenant_session(tenant_id) as session:
            if password is not None and not password:
                raise BadUserInput("no password on stdin", field="password")
            return await create_user(
                session, email=email, display_name=name or email, role=wanted, password=password
            )

    user, generated = run(create)
    typer.echo(f"created {user.email} ({user.role.value}) in {tenant}: {user.id}")
    if generated is not None:
        typer.echo(f"password: {generated}")


@apps_app.command("register")
def apps_register(
    name: Annotated[str, typer.Argument()],
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Exact redirect URI (repeatable).")
    ] = None,
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes the app may ask for.")] = "",
    public: Annotated[bool, typer.Option("--public", help="A public client (no secret; PKCE only).")] = False,
    webhook_url: Annotated[str | None, typer.Option(help="Where the app receives webhooks.")] = None,
) -> None:
    """Register a partner app; prints its client id and (confidential apps) its secret, shown once."""
    from crmkit.auth.apps import register_client

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    registered = run(
        lambda p: register_client(
            p.db,
            p.registry,
            name=name,
            redirect_uris=redirect_uri or [],
            scopes=wanted,
            confidential=not public,
            webhook_url=webhook_url,
            outbound=p.outbound,
        )
    )
    typer.echo(f"client_id: {registered.client.client_id}")
    if registered.client_secret is not None:
        typer.echo(f"client_secret: {registered.client_secret}")


@apps_app.command("install")
def apps_install(
    tenant: Annotated[str, typer.Argument(help="Tenant slug or id.")],
    client_id: Annotated[str, typer.Argument()],
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes granted to the app in this tenant.")],
) -> None:
    """Install an app in a tenant (tenant admins do this through GraphQL: installApp)."""
    from crmkit.auth.apps import install_app
    from crmkit.tenants.service import load_state, open_tenant

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]

    async def install(p: Platform) -> Any:
        tenant_id = (await open_tenant(p.db, tenant)).id
        async with p.db.tenant_session(tenant_id) as session:
            state = await load_state(session, tenant_id)
            assert state is not None
            return await install_app(
                session,
                p.registry,
                state.plugins,
                client_id=client_id,
                scopes=wanted,
                installed_by=CLI_OPERATOR,
            )

    installation = run(install)
    typer.echo(f"installed {client_id} in {tenant}: {installation.id} ({', '.join(installation.scopes)})")


# --- bulk import --------------------------------------------------------------------

REFUSALS_SHOWN = 20
"""Refused rows listed on stderr; ``--report`` writes them all."""


@app.command("import")
def import_rows(
    kind: Annotated[str, typer.Argument(help="customers, activities or consents.")],
    tenant: Annotated[str, typer.Argument(help="Tenant slug or id.")],
    file: Annotated[Path, typer.Argument(help="A CSV file with a header row, or JSON Lines.")],
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the file's extension).")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Rows per transaction (each commits with the progress).")
    ] = 1000,
    report: Annotated[
        Path | None, typer.Option(help="Write every refused row (line, field, reason) to this CSV file.")
    ] = None,
) -> None:
    """Import rows into a tenant: idempotent by externalRef, resumable after a crash.

    Exit code 0 when every row was imported or already present, 1 when rows were
    refused (the others are imported), 2 when nothing could be done."""
    from crmkit.core.imports import files
    from crmkit.core.imports.models import ImportKind
    from crmkit.core.imports.runs import import_file
    from crmkit.errors import BadUserInput
    from crmkit.jobs.backends import InlineQueue
    from crmkit.platform.operator_tokens import CLI_OPERATOR
    from crmkit.tenants.service import open_tenant

    try:
        wanted = ImportKind(kind)
    except ValueError:
        fail("BAD_USER_INPUT", f"unknown kind {kind!r} (customers, activities or consents)")
    if not file.is_file():
        fail("BAD_USER_INPUT", f"no file {file}")
    try:
        fmt = files.file_format(file, file_format)
    except BadUserInput as exc:
        fail(exc.code, exc.message)
    total = files.count_rows(file) - (1 if fmt is files.FileFormat.CSV else 0)

    async def run_import(p: Platform) -> Any:
        tenant_id = (await open_tenant(p.db, tenant, require_active=True)).id
        if isinstance(p.queue, InlineQueue):  # no worker here: the server's outbox sweep relays
            p.db.after_commit = None

        @asynccontextmanager
        async def scope() -> AsyncIterator[Any]:
            async with p.tenant_scope(tenant_id) as opened:
                yield opened.ctx

        # what the process holds by now (modules, the platform) lives until it exits:
        # left out of every collection, it no longer costs each one a scan of it all,
        # a quarter of an import's time
        gc.freeze()
        with _progress(total) as advance:
            return await import_file(
                scope,
                wanted,
                file,
                fmt,
                captured_by=CLI_OPERATOR,
                batch_size=batch_size,
                overlap=p.db.engine.dialect.name == "postgresql",
                progress=advance,
            )

    summary = run(run_import)
    if summary.resumed_after:
        typer.echo(f"resumed after line {summary.resumed_after:,} (committed by an earlier run)")
    typer.echo(
        f"{wanted.value}: {summary.imported:,} imported, {summary.skipped:,} skipped as already "
        f"present, {summary.refused_count:,} refused"
    )
    for refusal in summary.refused[:REFUSALS_SHOWN]:
        typer.echo(f"line {refusal.line}: {refusal.field or '-'}: {refusal.reason}", err=True)
    if len(summary.refused) > REFUSALS_SHOWN:
        more = len(summary.refused) - REFUSALS_SHOWN
        typer.echo(
            f"... and {more:,} more refused rows{'' if report else ' (list them with --report)'}", err=True
        )
    if report is not None:
        with report.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "field", "reason"])
            writer.writerows((r.line, r.field or "", r.reason) for r in summary.refused)
    if summary.refused_count:
        raise typer.Exit(1)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar of rows (rows/s, ETA) on a terminal; nothing otherwise."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    columns = (
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("import", total=total, rate="-")

        def advance(rows: int) -> None:
            bar.advance(task, rows)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        yield advance


# --- demo ---------------------------------------------------------------------------


@app.command()
def demo(port: int = typer.Option(8000, help="Port the server will listen on; it must be free.")) -> None:
    """Make sure the demo-bank tenant exists with sample data and every installed plugin
    enabled; print a token and a curl line for the server about to start."""
    from crmkit.demo import setup_demo

    ensure_port_free("127.0.0.1", port)
    ready = run(setup_demo)
    body = json.dumps({"query": ready.first_query})
    typer.echo("\nTenant demo-bank is ready. Access token (all scopes, 24 h):\n")
    typer.echo(ready.token)
    typer.echo("\nFirst query:\n")
    typer.echo(
        f"curl -s http://127.0.0.1:{port}/graphql -H 'Authorization: Bearer {ready.token}' "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}\n"
    )
    typer.echo(f"GraphiQL (development mode): http://127.0.0.1:{port}/graphql")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
