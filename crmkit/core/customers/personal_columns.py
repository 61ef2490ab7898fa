"""Personal data in any tenant-owned table, under the owning customer's data key.

A plugin declares a column ``mapped_column(crmkit.PersonalText())``; the row's
``customer_id`` names the customer whose data it is (another attribute with
``PersonalText(customer_attribute=...)``). The attribute holds text in Python and
AES-GCM ciphertext in the database, bound like the core's own fields to tenant,
customer, table, column and row (:class:`crmkit.crypto.DataKey`), so:

- a database dump or backup shows no value, and a ciphertext copied to another row,
  column or customer fails to decrypt (:class:`DecryptionError`, never a wrong value);
- erasing the customer deletes their data key, and every copy of the value becomes
  unreadable, backups included, without any plugin code: it then loads as ``None``.

How: values are sealed as the session flushes (:func:`_seal`) and opened after each ORM
query (:func:`_open_loaded`), with one query for the data keys of the customers
not already in the session. Plaintext never reaches the database: the column type
binds a value sealed for its place, or bytes taken from the column as they are (a
restore), and refuses text: a bulk ``insert()`` or ``update()`` with text, or a
``WHERE`` on the column, is an error rather than a leak. Load rows as ORM entities
(``select(Note)``), or, to only read them, as plain rows with :func:`read_rows`
(``select(Note.id, Note.customer_id, Note.body)``): a plain ``session.execute`` of
columns gives the ciphertext, and so does a session without the tenant's keys
(``Database.tenant_session``, unlike the platform's tenant scope): it can read, change
and delete such rows, but not set a personal value.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import LargeBinary, Select, Table, TypeDecorator, event, inspect, select
from sqlalchemy.orm import (
    Mapper,
    ORMExecuteState,
    QueryContext,
    Session,
    UOWTransaction,
    attributes,
)
from sqlalchemy.orm.util import identity_key

from crmkit.core.customers.models import CustomerKey
from crmkit.core.customers.personal import PAGE_KEYS, TENANT_KEYS
from crmkit.crypto import DataKey, TenantKeys
from crmkit.db import TenantOwned, TenantSession
from crmkit.errors import NotFound

Place = tuple[uuid.UUID, uuid.UUID, str, str, str]
"""What a ciphertext is bound to: tenant, customer, table, column, row."""

_TO_OPEN = "crmkit_personal_to_open"
"""Where a session keeps the rows loaded since its last query, to open their columns."""
_DATA_KEY = "_crmkit_data_key"


class UnsealedValue(TypeError):
    """Plaintext was about to reach a personal column in the database."""


class Sealed(str):
    """Text together with its ciphertext for one place: what a personal attribute holds
    once loaded or flushed. It is the text in every respect; the ciphertext lets an
    unchanged value go back unchanged, and its place makes a value moved to another row
    or customer encrypt afresh."""

    ciphertext: bytes
    place: Place

    def __new__(cls, text: str, ciphertext: bytes, place: Place) -> Sealed:
        sealed = super().__new__(cls, text)
        sealed.ciphertext = ciphertext
        sealed.place = place
        return sealed


class PersonalText(TypeDecorator[str]):
    """A text column of a customer's personal data, encrypted under their data key.

    ``customer_attribute`` names the attribute holding the customer's id, ``row_attribute``
    the row's own id (the AAD binds the value to it); the row id is assigned before the
    first flush when its column has a Python default such as ``crmkit.uuid7``. In the
    database the column is ``LargeBinary``: write ``sa.LargeBinary()`` in migrations.
    """

    impl = LargeBinary
    cache_ok = True

    def __init__(self, *, customer_attribute: str = "customer_id", row_attribute: str = "id") -> None:
        super().__init__()
        self.customer_attribute = customer_attribute
        self.row_attribute = row_attribute

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.ciphertext
        if isinstance(value, bytes):  # a stored ciphertext copied as it is (a restore):
            return value  # it opens in its own place only
        raise UnsealedValue(
            "a personal column takes values through the ORM (the flush encrypts them); "
            "it cannot be written in bulk or searched"
        )

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return value  # ciphertext: opened once the query is done (_open_loaded)

    def compare_values(self, x: Any, y: Any) -> bool:
        """Equal only when the ciphertext is: a value sealed afresh is always written."""
        if isinstance(x, Sealed) and isinstance(y, Sealed):
            return x.ciphertext == y.ciphertext
        return x is y


@dataclass(frozen=True)
class PersonalColumn:
    key: str
    table: str
    column: str
    customer_attribute: str
    row_attribute: str

    def place(self, row: Any) -> Place:
        state = row.__dict__
        return (
            state["tenant_id"],
            state[self.customer_attribute],
            self.table,
            self.column,
            str(state[self.row_attribute]),
        )


_columns: dict[Mapper[Any], tuple[PersonalColumn, ...]] = {}


def personal_columns(mapper: Mapper[Any]) -> tuple[PersonalColumn, ...]:
    """The mapper's personal columns (checked once: a misdeclared model fails loudly)."""
    found = _columns.get(mapper)
    if found is None:
        found = _columns[mapper] = tuple(_find(mapper))
    return found


_of_class: dict[type, tuple[PersonalColumn, ...]] = {}


def _of_row(row: Any) -> tuple[PersonalColumn, ...]:
    """:func:`personal_columns` of the row's class, without inspecting the row: asked
    for every row a query loads."""
    found = _of_class.get(type(row))
    if found is None:
        found = _of_class[type(row)] = personal_columns(inspect(row).mapper)
    return found


def _find(mapper: Mapper[Any]) -> Iterable[PersonalColumn]:
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if not isinstance(column.type, PersonalText):
            continue
        where = f"{mapper.class_.__name__}.{prop.key}"
        if not issubclass(mapper.class_, TenantOwned):
            raise TypeError(f"{where}: personal data lives in tenant-owned tables (crmkit.TenantOwned)")
        for attribute in (column.type.customer_attribute, column.type.row_attribute):
            if attribute not in mapper.column_attrs:
                raise TypeError(f"{where}: the model has no column attribute {attribute!r}")
        yield PersonalColumn(
            prop.key,
            cast(Table, column.table).name,
            column.name,
            column.type.customer_attribute,
            column.type.row_attribute,
        )


def _tenant_keys(session: Session, tenant_id: uuid.UUID) -> TenantKeys:
    keys: TenantKeys | None = session.info.get(TENANT_KEYS)
    if keys is None:
        raise RuntimeError("personal data used outside a tenant scope with its keys bound")
    if keys.tenant_id != tenant_id:
        raise RuntimeError("a row of another tenant reached this session")
    return keys


def _data_keys(session: Session, wanted: set[tuple[uuid.UUID, uuid.UUID]]) -> dict[uuid.UUID, DataKey]:
    """The data keys of these (tenant, customer) pairs that still exist: from the session
    when their customers are loaded (as entities, or on a page of rows), else in one
    query. An erased customer has none."""
    rows: list[CustomerKey] = []
    missing: list[uuid.UUID] = []
    found: dict[uuid.UUID, DataKey] = {}
    page_keys: dict[uuid.UUID, bytes] = session.info.get(PAGE_KEYS, {})
    for tenant_id, customer_id in wanted:
        row = session.identity_map.get(identity_key(CustomerKey, (tenant_id, customer_id)))
        if row is not None:
            rows.append(row)
        elif customer_id in page_keys:
            keys = _tenant_keys(session, tenant_id)
            found[customer_id] = keys.unwrap_data_key(customer_id, page_keys[customer_id])
        else:
            missing.append(customer_id)
    if missing:
        with session.no_autoflush:
            rows += session.scalars(select(CustomerKey).where(CustomerKey.customer_id.in_(missing)))
    for row in rows:
        key: DataKey | None = row.__dict__.get(_DATA_KEY)
        if key is None:
            keys = _tenant_keys(session, row.tenant_id)
            key = row.__dict__[_DATA_KEY] = keys.unwrap_data_key(row.customer_id, row.wrapped_key)
        found[row.customer_id] = key
    return found


def _assign_row_id(row: Any, column: PersonalColumn) -> None:
    """Rows get their id before the flush that inserts them: the AAD needs it."""
    if row.__dict__.get(column.row_attribute) is not None:
        return
    default = inspect(type(row)).columns[column.row_attribute].default
    if default is None or not default.is_callable:
        raise TypeError(
            f"{type(row).__name__}.{column.row_attribute} must be set before the flush "
            "(or have a Python default such as crmkit.uuid7): a personal column is bound to it"
        )
    setattr(row, column.row_attribute, default.arg(None))


def _unopened(row: Any, key: str, value: Any) -> bool:
    """The ciphertext as loaded by a session without keys, untouched: it stays as it is."""
    return isinstance(value, bytes) and not inspect(row).attrs[key].history.has_changes()


def _seal(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Encrypt every personal value set since the last flush, for its place."""
    todo: list[tuple[Any, PersonalColumn, str]] = []
    for row in (*session.new, *session.dirty):
        for column in _of_row(row):
            value = row.__dict__.get(column.key)
            if value is None or _unopened(row, column.key, value):
                continue
            if not isinstance(value, str):
                found = type(value).__name__
                raise UnsealedValue(f"{type(row).__name__}.{column.key} holds text, not {found}")
            _assign_row_id(row, column)
            if not (isinstance(value, Sealed) and value.place == column.place(row)):
                todo.append((row, column, value))
    if not todo:
        return
    keys = _data_keys(session, {column.place(row)[:2] for row, column, _ in todo})
    for row, column, value in todo:
        _, customer_id, table, name, row_id = place = column.place(row)
        key = keys.get(customer_id)
        if key is None:  # erased (or never there): nothing personal may reach them
            raise NotFound(f"no customer {customer_id}")
        text = str(value)
        ciphertext = key.encrypt(text, table=table, column=name, row_id=row_id)
        setattr(row, column.key, Sealed(text, ciphertext, place))


def _loaded(row: Any, context: QueryContext, attrs: Iterable[str] | None = None) -> None:
    """A row with personal columns came from the database: open it after the query."""
    if _of_row(row):
        context.session.info.setdefault(_TO_OPEN, []).append(row)


def _open_loaded(state: ORMExecuteState) -> Any:
    """Run the query, then decrypt the personal columns of the rows it loaded."""
    if not state.is_select:
        return None
    result = state.invoke_statement()  # an AsyncSession's result has loaded every row
    session = state.session
    if (
        _TO_OPEN not in session.info
        and not state.execution_options.get("prebuffer_rows")  # an AsyncSession's: all loaded
        and any(personal_columns(m) for m in state.all_mappers)
    ):
        result = result.freeze()()  # a plain Session loads rows as they are read: read them now
    rows: list[Any] = session.info.pop(_TO_OPEN, [])
    if rows and TENANT_KEYS in session.info:
        _open(session, rows)
    return result


def _open(session: Session, rows: list[Any]) -> None:
    """Replace the loaded ciphertexts by their text (``None`` for an erased customer's)."""
    todo = [
        (row, column, row.__dict__[column.key])
        for row in rows
        for column in _of_row(row)
        if isinstance(row.__dict__.get(column.key), bytes)
    ]
    keys = _data_keys(session, {column.place(row)[:2] for row, column, _ in todo})
    for row, column, ciphertext in todo:
        _, customer_id, table, name, row_id = place = column.place(row)
        key = keys.get(customer_id)
        value = None  # the customer was erased: the value is gone for good
        if key is not None:
            text = key.decrypt(ciphertext, table=table, column=name, row_id=row_id)
            value = Sealed(text, ciphertext, place)
        attributes.set_committed_value(row, column.key, value)


async def read_rows(
    session: TenantSession, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any] | None = None
) -> list[Any]:
    """The rows of ``statement``, a select of a model's columns, as plain read-only
    objects named after the model (an attribute per column), personal columns opened
    (``None`` once their customer is erased).

    For reading a batch (a ``crmkit.customer_field``'s loader): no entity, identity map
    or load event per row, which cost more than the query. It runs as any query of the
    session does, inside the tenant's walls. A personal column needs its row's customer
    and row id columns selected too (``Note.customer_id``, ``Note.id``).
    """
    personal = _selected_personal(statement)
    row_class = _row_class(statement.column_descriptions[0]["entity"])
    result = await session.execute(statement, params)
    names = tuple(result.keys())
    rows = [row_class(**dict(zip(names, values, strict=True))) for values in result]
    if personal and rows:
        await session.run_sync(_open_plain, rows, personal)
    return rows


async def sealed_rows(
    session: TenantSession, model: type[Any], rows: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Copies of ``rows`` (a model's attributes by name) with each personal value
    encrypted for its place, as a flush would seal it: for a bulk statement that writes
    many rows at once (an ``UPDATE ... FROM (VALUES ...)``), which binds the ciphertexts
    as they are. Each row holding a personal value names its customer and its id (the
    column's ``customer_attribute`` and ``row_attribute``); a value for an erased or
    unknown customer raises ``NotFound``. The data keys come from the session when its
    customers are loaded, else in one query."""
    copies = [dict(row) for row in rows]
    columns = personal_columns(inspect(model))
    if columns and copies:
        await session.run_sync(_seal_plain, copies, columns)
    return copies


def _seal_plain(session: Session, rows: list[dict[str, Any]], columns: tuple[PersonalColumn, ...]) -> None:
    """Replace the rows' personal texts by their ciphertexts, as :func:`_seal` does."""
    tenant_id = session.info["tenant_id"]
    todo = [(row, column) for row in rows for column in columns if row.get(column.key) is not None]
    keys = _data_keys(session, {(tenant_id, row[column.customer_attribute]) for row, column in todo})
    for row, column in todo:
        customer_id = row[column.customer_attribute]
        key = keys.get(customer_id)
        if key is None:  # erased (or never there): nothing personal may reach them
            raise NotFound(f"no customer {customer_id}")
        row_id = str(row[column.row_attribute])
        row[column.key] = key.encrypt(
            str(row[column.key]), table=column.table, column=column.column, row_id=row_id
        )


_ROW_CLASSES: dict[Any, type[SimpleNamespace]] = {}


def _row_class(model: Any) -> type[SimpleNamespace]:
    """A plain row class named after ``model``: the access log names what a personal
    field showed by its row's class (``Note``)."""
    row_class = _ROW_CLASSES.get(model)
    if row_class is None:
        row_class = _ROW_CLASSES[model] = type(model.__name__, (SimpleNamespace,), {})
    return row_class


def _selected_personal(statement: Select[*tuple[Any, ...]]) -> list[PersonalColumn]:
    """The personal columns ``statement`` selects, checked to come with what opens them."""
    selected = statement.selected_columns
    names = set(selected.keys())
    found = []
    for key, column in zip(selected.keys(), selected, strict=True):
        if not isinstance(column.type, PersonalText):
            continue
        table = cast(Table, column.table).name
        for attribute in (column.type.customer_attribute, column.type.row_attribute):
            if attribute not in names:
                raise TypeError(f"read_rows: select {table}.{attribute} too, to open {table}.{column.name}")
        found.append(
            PersonalColumn(key, table, column.name, column.type.customer_attribute, column.type.row_attribute)
        )
    return found


def _open_plain(session: Session, rows: list[Any], personal: list[PersonalColumn]) -> None:
    """Replace the plain rows' ciphertexts by their text, as :func:`_open` does."""
    tenant_id = session.info["tenant_id"]
    wanted = {
        (tenant_id, getattr(row, column.customer_attribute))
        for row in rows
        for column in personal
        if getattr(row, column.key) is not None  # a row without a value needs no key
    }
    keys = _data_keys(session, wanted)
    for row in rows:
        for column in personal:
            ciphertext = getattr(row, column.key)
            if ciphertext is None:
                continue
            key = keys.get(getattr(row, column.customer_attribute))
            row_id = str(getattr(row, column.row_attribute))
            text = key and key.decrypt(ciphertext, table=column.table, column=column.column, row_id=row_id)
            setattr(row, column.key, text)  # None: the customer was erased


def install() -> None:
    """Attach sealing and opening to every ORM session (idempotent; after the customers'
    own encryption step, so a customer created in the same flush has a data key)."""
    for target, name, listener in (
        (Session, "before_flush", _seal),
        (Session, "do_orm_execute", _open_loaded),
        (Mapper, "load", _loaded),
        (Mapper, "refresh", _loaded),
    ):
        if not event.contains(target, name, listener):
            event.listen(target, name, listener)
