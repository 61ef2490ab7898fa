"""``crmkit.PersonalText`` on its own: a test-only model whose customer attribute is not
``customer_id`` and whose rows no erase hook deletes, so what erasure does to them is
the column type's doing alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import LargeBinary, MetaData, Uuid, insert, literal, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import crmkit
from crmkit.core.customers.personal_columns import UnsealedValue
from crmkit.crypto import DecryptionError
from crmkit.testing import Env


class Base(DeclarativeBase):
    metadata = MetaData()  # not crmkit's: the table exists for these tests only


class Letter(crmkit.TenantOwned, Base):
    __tablename__ = "test_personal_letters"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    holder_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    text: Mapped[str | None] = mapped_column(crmkit.PersonalText(customer_attribute="holder_id"))


SECRET = "Dear Mrs Zweistein, about your overdraft"


@pytest.fixture
async def letters(env: Env) -> AsyncIterator[None]:
    async with env.owner_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield
    async with env.owner_engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)


async def write(env: Env, tenant: uuid.UUID, holder: str, body: str = SECRET) -> uuid.UUID:
    async with env.platform.tenant_scope(tenant) as scope:
        letter = Letter(holder_id=uuid.UUID(holder), text=body)
        scope.session.add(letter)
        await scope.session.flush()
        return letter.id


async def read(env: Env, tenant: uuid.UUID, letter_id: uuid.UUID) -> str | None:
    async with env.platform.tenant_scope(tenant) as scope:
        letter = await scope.session.get(Letter, (tenant, letter_id))
        assert letter is not None
        return letter.text


LETTERS = Letter.__table__


async def raw(env: Env, letter_id: uuid.UUID) -> bytes:
    """The stored value, read past the ORM as the tables' owner."""
    async with env.owner_engine.connect() as conn:
        return bytes(await conn.scalar(select(LETTERS.c.text).where(LETTERS.c.id == letter_id)))


@pytest.mark.usefixtures("letters")
async def test_stored_encrypted_and_read_in_clear(env: Env) -> None:
    tenant = await env.tenant()
    holder = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    letter_id = await write(env, tenant, holder)

    assert SECRET.encode() not in await raw(env, letter_id)
    assert await read(env, tenant, letter_id) == SECRET
    async with env.platform.tenant_scope(tenant) as scope:  # a query, not the identity map
        [letter] = await scope.session.scalars(select(Letter).where(Letter.id == letter_id))
        assert letter.text == SECRET
        letter.text = "Changed."
    assert await read(env, tenant, letter_id) == "Changed."


@pytest.mark.usefixtures("letters")
async def test_a_ciphertext_copied_to_another_row_does_not_decrypt(env: Env) -> None:
    tenant = await env.tenant()
    holder = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    first, second = await write(env, tenant, holder), await write(env, tenant, holder, "Other.")
    async with env.owner_engine.begin() as conn:  # as if someone with database access did it
        copied = literal(await raw(env, first), LargeBinary)
        await conn.execute(LETTERS.update().where(LETTERS.c.id == second).values(text=copied))
    with pytest.raises(DecryptionError):
        await read(env, tenant, second)


@pytest.mark.usefixtures("letters")
async def test_erasing_the_customer_makes_the_value_unreadable_without_plugin_code(env: Env) -> None:
    tenant = await env.tenant()
    holder = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    kept = (await env.create_customer(tenant, familyName="Other"))["id"]
    erased_letter, kept_letter = await write(env, tenant, holder), await write(env, tenant, kept)
    ciphertext = await raw(env, erased_letter)

    body = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { id } }", {"id": holder}, tenant=tenant
    )
    assert "errors" not in body, body

    assert await raw(env, erased_letter) == ciphertext  # the row is still there, as in a backup
    assert await read(env, tenant, erased_letter) is None  # but nothing can open it
    async with env.platform.tenant_scope(tenant) as scope:  # a page of both loads fine
        texts = {row.id: row.text for row in await scope.session.scalars(select(Letter))}
    assert texts == {erased_letter: None, kept_letter: SECRET}


@pytest.mark.usefixtures("letters")
async def test_nothing_personal_is_written_for_an_erased_customer(env: Env) -> None:
    tenant = await env.tenant()
    holder = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    await env.gql("mutation($id: UUID!) { eraseCustomer(id: $id) { id } }", {"id": holder}, tenant=tenant)

    with pytest.raises(crmkit.NotFound):
        await write(env, tenant, holder)
    async with env.platform.tenant_scope(tenant) as scope:
        assert list(await scope.session.scalars(select(Letter))) == []


@pytest.mark.usefixtures("letters")
async def test_clear_text_never_reaches_the_column_in_bulk_or_in_a_search(env: Env) -> None:
    tenant = await env.tenant()
    holder = uuid.UUID((await env.create_customer(tenant, familyName="Zweistein"))["id"])
    async with env.platform.tenant_scope(tenant) as scope:
        for statement in (
            insert(Letter).values(tenant_id=tenant, id=crmkit.uuid7(), holder_id=holder, text=SECRET),
            select(Letter).where(Letter.text == SECRET),
        ):
            with pytest.raises(StatementError) as refused:
                await scope.session.execute(statement)
            assert isinstance(refused.value.orig, UnsealedValue)


@pytest.mark.usefixtures("letters")
async def test_a_session_without_the_keys_sees_the_ciphertext_and_can_delete(env: Env) -> None:
    tenant = await env.tenant()
    holder = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    letter_id = await write(env, tenant, holder)
    ciphertext = await raw(env, letter_id)

    async with env.platform.db.tenant_session(tenant) as session:  # no tenant keys bound
        [letter] = await session.scalars(select(Letter))
        assert letter.text == ciphertext
        letter.holder_id = uuid.UUID(holder)  # a change elsewhere leaves the value as it is
        await session.flush()
        await session.delete(letter)
    async with env.platform.tenant_scope(tenant) as scope:
        assert list(await scope.session.scalars(select(Letter))) == []


@pytest.mark.usefixtures("letters")
async def test_read_rows_gives_plain_rows_opened_inside_the_tenants_walls(env: Env) -> None:
    """``crmkit.read_rows``: a select of columns as plain rows named after the model, the
    personal columns opened (``None`` for an erased customer), another tenant's rows
    unseen, and a personal column without what opens it refused."""
    tenant, other = await env.tenant(), await env.tenant()
    holder = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    erased = (await env.create_customer(tenant, familyName="Gone"))["id"]
    stranger = (await env.create_customer(other, familyName="Else"))["id"]
    mine, gone = await write(env, tenant, holder), await write(env, tenant, erased, "Bye.")
    await write(env, other, stranger, "Not yours.")
    erase = "mutation($id: UUID!) { eraseCustomer(id: $id) { id } }"
    assert "errors" not in await env.gql(erase, {"id": erased}, tenant=tenant)

    letters = select(Letter.id, Letter.holder_id, Letter.text).order_by(Letter.id)
    async with env.platform.tenant_scope(tenant) as scope:
        rows = await crmkit.read_rows(scope.session, letters)
        assert [(type(row).__name__, row.id, row.text) for row in rows] == [
            ("Letter", mine, SECRET),
            ("Letter", gone, None),
        ]
        assert not scope.session.identity_map  # no entity was loaded
        with pytest.raises(TypeError, match=r"select test_personal_letters\.holder_id too"):
            await crmkit.read_rows(scope.session, select(Letter.id, Letter.text))


@pytest.mark.usefixtures("letters")
async def test_sealed_rows_write_personal_values_in_one_bulk_statement(env: Env) -> None:
    """``crmkit.sealed_rows``: texts sealed for their rows, written by one bulk UPDATE,
    read back in clear, each only in its own row; a value for an erased customer refused."""
    tenant = await env.tenant()
    holder = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    erased = (await env.create_customer(tenant, familyName="Gone"))["id"]
    first, second = await write(env, tenant, holder), await write(env, tenant, holder)
    erase = "mutation($id: UUID!) { eraseCustomer(id: $id) { id } }"
    assert "errors" not in await env.gql(erase, {"id": erased}, tenant=tenant)
    async with env.platform.tenant_scope(tenant) as scope:
        rows: list[dict[str, Any]] = [
            {"id": first, "holder_id": uuid.UUID(holder), "text": "One."},
            {"id": second, "text": None},
        ]
        sealed = await crmkit.sealed_rows(scope.session, Letter, rows)
        assert rows[0]["text"] == "One."  # the caller's rows are left as they are
        assert isinstance(sealed[0]["text"], bytes) and b"One." not in sealed[0]["text"]
        assert sealed[1] == {"id": second, "text": None}  # nothing to seal, no customer needed
        await scope.session.execute(update(Letter).where(Letter.id == first).values(text=sealed[0]["text"]))
        with pytest.raises(crmkit.NotFound):
            await crmkit.sealed_rows(
                scope.session, Letter, [{"id": second, "holder_id": uuid.UUID(erased), "text": "No."}]
            )
    assert await read(env, tenant, first) == "One."
    assert await read(env, tenant, second) == SECRET
    async with env.owner_engine.begin() as conn:  # copied to the other row, it does not open
        await conn.execute(update(Letter).where(Letter.id == second).values(text=sealed[0]["text"]))
    with pytest.raises(DecryptionError):
        await read(env, tenant, second)
