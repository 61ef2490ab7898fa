"""Unit tests of the key hierarchy, field encryption, blind indexes and the audit key."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from crmkit import crypto
from crmkit.crypto import (
    AuditSigner,
    DataKey,
    DecryptionError,
    MasterKey,
    TenantKeys,
    name_words,
    new_master_key_text,
    new_tenant_key,
    normalise_email,
    normalise_national_id,
    normalise_phone,
    unwrap_tenant_key,
    verify_audit_signature,
)
from crmkit.settings import Settings

FIELD: dict[str, Any] = {"table": "customers", "column": "email", "row_id": uuid.UUID(int=7)}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys configured in the developer's shell must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("CRMKIT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def master() -> MasterKey:
    return MasterKey(os.urandom(32))


@pytest.fixture
def tenant(master: MasterKey) -> TenantKeys:
    keys, _ = new_tenant_key(master, uuid.uuid4())
    return keys


@pytest.fixture
def customer_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def data_key(tenant: TenantKeys, customer_id: uuid.UUID) -> DataKey:
    key, _ = tenant.new_data_key(customer_id)
    return key


def flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1 :]


# --- round trips and format ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["ada@example.com", "", "José María López 张伟 🙂", "x" * 10_000])
def test_field_round_trip(data_key: DataKey, value: str) -> None:
    blob = data_key.encrypt(value, **FIELD)
    assert isinstance(blob, bytes)
    assert data_key.decrypt(blob, **FIELD) == value


def test_ciphertext_format_is_compact_and_randomised(data_key: DataKey) -> None:
    value = "ada@example.com"
    one, two = data_key.encrypt(value, **FIELD), data_key.encrypt(value, **FIELD)
    assert one != two  # fresh nonce each time
    assert one[0] == crypto.VERSION
    assert len(one) == 1 + 12 + len(value.encode()) + 16
    assert value.encode() not in one


def test_full_hierarchy_round_trip_through_stored_forms(master: MasterKey) -> None:
    tenant_id, customer_id = uuid.uuid4(), uuid.uuid4()
    _, wrapped_tenant = new_tenant_key(master, tenant_id)
    assert len(wrapped_tenant) == 1 + 12 + 32 + 16
    tenant = unwrap_tenant_key(master, tenant_id, wrapped_tenant)
    key, wrapped_data = tenant.new_data_key(customer_id)
    blob = key.encrypt("secret", **FIELD)

    # Later, from the stored (wrapped) forms only.
    again = unwrap_tenant_key(master, tenant_id, wrapped_tenant)
    data_key = again.unwrap_data_key(customer_id, wrapped_data)
    assert (data_key.tenant_id, data_key.customer_id) == (tenant_id, customer_id)
    assert data_key.decrypt(blob, **FIELD) == "secret"
    assert data_key.decrypt(memoryview(blob), **FIELD) == "secret"  # type: ignore[arg-type]


def test_row_id_as_uuid_or_its_string(data_key: DataKey) -> None:
    row = uuid.uuid4()
    blob = data_key.encrypt("v", table="customers", column="phone", row_id=row)
    assert data_key.decrypt(blob, table="customers", column="phone", row_id=str(row)) == "v"


def test_reprs_hide_key_material(master: MasterKey, tenant: TenantKeys, data_key: DataKey) -> None:
    for obj in (master, tenant, data_key):
        assert "secret" in repr(obj)
        assert "\\x" not in repr(obj)


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        MasterKey(b"short")
    with pytest.raises(ValueError):
        TenantKeys(uuid.uuid4(), os.urandom(16))


def test_ids_must_be_uuids(master: MasterKey, tenant: TenantKeys) -> None:
    with pytest.raises(TypeError):
        new_tenant_key(master, str(uuid.uuid4()))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tenant.new_data_key(str(uuid.uuid4()))  # type: ignore[arg-type]


# --- everything bound to its place ---------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 12, 13, -1])
def test_tampered_ciphertext_fails(data_key: DataKey, index: int) -> None:
    blob = data_key.encrypt("ada@example.com", **FIELD)
    with pytest.raises(DecryptionError):
        data_key.decrypt(flip(blob, index % len(blob)), **FIELD)


def test_truncated_ciphertext_fails(data_key: DataKey) -> None:
    blob = data_key.encrypt("ada@example.com", **FIELD)
    for cut in (0, 1, 13, 28, len(blob) - 1):
        with pytest.raises(DecryptionError):
            data_key.decrypt(blob[:cut], **FIELD)


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"row_id": uuid.UUID(int=8)},
        {"column": "phone"},
        {"table": "contacts"},
        # Ambiguity check: the same characters split differently across the parts.
        {"table": "customer", "column": "semail"},
    ],
)
def test_ciphertext_moved_to_another_place_fails(data_key: DataKey, elsewhere: dict[str, Any]) -> None:
    blob = data_key.encrypt("ada@example.com", **FIELD)
    with pytest.raises(DecryptionError):
        data_key.decrypt(blob, **(FIELD | elsewhere))


def test_ciphertext_under_another_customers_key_fails(tenant: TenantKeys, data_key: DataKey) -> None:
    blob = data_key.encrypt("ada@example.com", **FIELD)
    other, _ = tenant.new_data_key(uuid.uuid4())
    with pytest.raises(DecryptionError):
        other.decrypt(blob, **FIELD)


def test_same_raw_key_other_tenant_or_customer_fails(data_key: DataKey) -> None:
    """Even with the right key bytes, the AAD names the tenant and the customer."""
    raw = data_key._aead  # the AESGCM object, reused to model "same key bytes"
    blob = data_key.encrypt("ada@example.com", **FIELD)
    for tenant_id, customer_id in [
        (uuid.uuid4(), data_key.customer_id),
        (data_key.tenant_id, uuid.uuid4()),
    ]:
        clone = DataKey(tenant_id, customer_id, os.urandom(32))
        clone._aead = raw
        with pytest.raises(DecryptionError):
            clone.decrypt(blob, **FIELD)


def test_wrapped_tenant_key_moved_to_another_tenant_fails(master: MasterKey) -> None:
    tenant_id = uuid.uuid4()
    _, wrapped = new_tenant_key(master, tenant_id)
    with pytest.raises(DecryptionError):
        unwrap_tenant_key(master, uuid.uuid4(), wrapped)
    with pytest.raises(DecryptionError):
        unwrap_tenant_key(MasterKey(os.urandom(32)), tenant_id, wrapped)
    with pytest.raises(DecryptionError):
        unwrap_tenant_key(master, tenant_id, flip(wrapped, 20))


def test_wrapped_data_key_moved_to_another_customer_or_tenant_fails(
    master: MasterKey, tenant: TenantKeys, customer_id: uuid.UUID
) -> None:
    _, wrapped = tenant.new_data_key(customer_id)
    with pytest.raises(DecryptionError):
        tenant.unwrap_data_key(uuid.uuid4(), wrapped)
    other_tenant, _ = new_tenant_key(master, uuid.uuid4())
    with pytest.raises(DecryptionError):
        other_tenant.unwrap_data_key(customer_id, wrapped)
    # Same tenant key bytes but another tenant id: still refused.
    same_bytes = TenantKeys(uuid.uuid4(), tenant._raw)
    with pytest.raises(DecryptionError):
        same_bytes.unwrap_data_key(customer_id, wrapped)


def test_wrapped_key_is_not_a_field_ciphertext(tenant: TenantKeys, customer_id: uuid.UUID) -> None:
    """Domain separation: a wrapped tenant key is refused where a data key is expected."""
    master = MasterKey(os.urandom(32))
    _, wrapped_tenant = new_tenant_key(master, tenant.tenant_id)
    with pytest.raises(DecryptionError):
        tenant.unwrap_data_key(customer_id, wrapped_tenant)


# --- blind indexes --------------------------------------------------------------------------


def test_normalisers() -> None:
    assert normalise_email(" Ada@Example.COM ") == "ada@example.com"
    assert normalise_phone(" +1 (555) 010-9999 ") == "+15550109999"
    assert normalise_phone("0555 010 9999") == "05550109999"
    assert normalise_phone("\uff0b\uff18\uff16 \uff11\uff13\uff18-0000") == "+861380000"  # full-width forms
    assert normalise_phone("٠١٢") == "012"  # Arabic-Indic digits
    assert normalise_phone("+") == ""
    assert normalise_national_id(" ab-12 34/x ") == "AB1234X"
    assert name_words("José  María-López") == {"jose", "maria", "lopez"}
    assert name_words("O'Brien, Seán") == {"o", "brien", "sean"}
    assert name_words("Straße") == {"strasse"}
    assert name_words("张伟") == {"张伟"}
    assert name_words(" - ") == set()


def test_blind_index_equal_for_normalised_equal_inputs(tenant: TenantKeys) -> None:
    a = tenant.blind_index("email", " Ada@Example.COM ")
    assert a == tenant.blind_index("email", "ada@example.com")
    assert len(a) == 16
    assert a != tenant.blind_index("email", "ada@example.org")
    assert tenant.blind_index("phone", "+1 555-0100") == tenant.blind_index("phone", "+15550100")
    assert tenant.blind_index("national_id", "ab 123") == tenant.blind_index("national_id", "AB-123")


def test_blind_index_differs_across_tenants_and_kinds(master: MasterKey, tenant: TenantKeys) -> None:
    other, _ = new_tenant_key(master, uuid.uuid4())
    assert tenant.blind_index("email", "a@b.c") != other.blind_index("email", "a@b.c")
    assert tenant.blind_index("phone", "12345") != tenant.blind_index("national_id", "12345")
    assert tenant.name_tokens("ada") != other.name_tokens("ada")


def test_blind_index_stable_for_the_same_tenant_key(master: MasterKey) -> None:
    tenant_id = uuid.uuid4()
    keys, wrapped = new_tenant_key(master, tenant_id)
    again = unwrap_tenant_key(master, tenant_id, wrapped)
    assert keys.blind_index("email", "a@b.c") == again.blind_index("email", "a@b.c")
    assert keys.name_tokens("Ada Lovelace") == again.name_tokens("ada  LOVELACE")


def test_blind_index_refuses_empty_and_unknown(tenant: TenantKeys) -> None:
    with pytest.raises(ValueError):
        tenant.blind_index("phone", "n/a")
    with pytest.raises(ValueError):
        tenant.blind_index("email", "   ")
    with pytest.raises(ValueError):
        tenant.blind_index("name", "Ada")  # type: ignore[arg-type]


def test_name_tokens(tenant: TenantKeys) -> None:
    tokens = tenant.name_tokens("José  María-López")
    assert tokens == tenant.name_tokens("jose maria lopez")
    assert len(tokens) == 3
    assert all(len(t) == 16 for t in tokens)
    assert tenant.name_tokens("López") <= tokens  # search by one word
    assert tenant.name_tokens("") == set()
    # A name word and an exact-kind value with the same text index differently.
    assert tenant.name_tokens("12345") != {tenant.blind_index("phone", "12345")}


# --- master key loading ------------------------------------------------------------------


def test_dev_master_key_generated_once_and_reused(tmp_path: Path) -> None:
    settings = Settings(dev_mode=True, data_dir=tmp_path / "data")
    first = MasterKey.load(settings)
    path = tmp_path / "data" / crypto.DEV_MASTER_KEY_FILE
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left

    second = MasterKey.load(settings)
    assert path.read_bytes() == content
    tenant_id = uuid.uuid4()
    _, wrapped = new_tenant_key(first, tenant_id)
    unwrap_tenant_key(second, tenant_id, wrapped)  # same key


def test_dev_key_creation_race_keeps_the_first_key(tmp_path: Path) -> None:
    """If another process publishes the key first, its key is used and ours dropped."""
    path = tmp_path / "k"

    def create() -> bytes:
        path.write_bytes(b"winner")  # the other process, just before our link
        return b"loser"

    assert crypto._load_or_create(path, create) == b"winner"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_no_master_key_outside_dev_mode_raises(tmp_path: Path) -> None:
    settings = Settings(dev_mode=False, data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="CRMKIT_MASTER_KEY"):
        MasterKey.load(settings)
    assert list(tmp_path.iterdir()) == []


def test_master_key_from_env_base64(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = os.urandom(32)
    reference = MasterKey(raw)
    tenant_id = uuid.uuid4()
    _, wrapped = new_tenant_key(reference, tenant_id)

    for text in (
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        monkeypatch.setenv("CRMKIT_MASTER_KEY", text)
        settings = Settings(data_dir=tmp_path)
        assert settings.master_key is not None
        assert text not in repr(settings)  # SecretStr
        unwrap_tenant_key(MasterKey.load(settings), tenant_id, wrapped)
    assert list(tmp_path.iterdir()) == []  # nothing generated


def test_master_key_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = new_master_key_text()
    path = tmp_path / "master.key"
    path.write_text(text + "\n")
    monkeypatch.setenv("CRMKIT_MASTER_KEY_FILE", str(path))
    loaded = MasterKey.load(Settings(data_dir=tmp_path))
    tenant_id = uuid.uuid4()
    _, wrapped = new_tenant_key(MasterKey.from_text(text), tenant_id)
    unwrap_tenant_key(loaded, tenant_id, wrapped)


@pytest.mark.parametrize("bad", ["", "not base64!", base64.urlsafe_b64encode(b"x" * 31).decode()])
def test_bad_master_key_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    settings = Settings(master_key=SecretStr(bad), data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="CRMKIT_MASTER_KEY") as info:
        MasterKey.load(settings)
    if bad:
        assert bad not in str(info.value)


def test_missing_master_key_file_is_not_regenerated(tmp_path: Path) -> None:
    settings = Settings(dev_mode=True, data_dir=tmp_path, master_key_file=tmp_path / "gone.key")
    with pytest.raises(RuntimeError, match="does not exist"):
        MasterKey.load(settings)
    assert list(tmp_path.iterdir()) == []


def test_both_master_key_settings_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(new_master_key_text())
    settings = Settings(
        master_key=SecretStr(new_master_key_text()),
        master_key_file=path,
        data_dir=tmp_path,
    )
    with pytest.raises(RuntimeError, match="only one"):
        MasterKey.load(settings)


# --- audit signer ---------------------------------------------------------------------------


def test_audit_signer_sign_verify_and_tamper(tmp_path: Path) -> None:
    signer = AuditSigner.load(Settings(dev_mode=True, data_dir=tmp_path))
    message = b"checkpoint tenant=1 seq=42 hash=abcd"
    signature = signer.sign(message)
    assert len(signature) == 64
    assert signer.verify(message, signature)
    assert not signer.verify(message + b"!", signature)
    assert not signer.verify(message, flip(signature, 0))
    assert not signer.verify(message, b"short")

    pem = signer.public_key_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert verify_audit_signature(pem, message, signature)
    assert not verify_audit_signature(pem, b"other", signature)
    assert len(signer.key_id) == 32


def test_dev_audit_key_generated_once_and_reused(tmp_path: Path) -> None:
    settings = Settings(dev_mode=True, data_dir=tmp_path)
    first = AuditSigner.load(settings)
    path = tmp_path / crypto.DEV_AUDIT_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = AuditSigner.load(settings)
    assert first.public_key_pem() == second.public_key_pem()
    assert second.verify(b"x", first.sign(b"x"))
    assert "PRIVATE" not in repr(first)


def test_audit_key_from_file_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="CRMKIT_AUDIT_KEY_FILE"):
        AuditSigner.load(Settings(data_dir=tmp_path))

    path = tmp_path / "audit.pem"
    path.write_bytes(crypto._new_ed25519_pem())
    monkeypatch.setenv("CRMKIT_AUDIT_KEY_FILE", str(path))
    signer = AuditSigner.load(Settings(data_dir=tmp_path))
    assert AuditSigner.from_pem(path.read_bytes()).public_key_pem() == signer.public_key_pem()

    with pytest.raises(RuntimeError, match="does not exist"):
        AuditSigner.load(Settings(dev_mode=True, audit_key_file=tmp_path / "gone.pem"))


def test_audit_key_of_wrong_type_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(RuntimeError, match="Ed25519"):
        AuditSigner.load(Settings(audit_key_file=path))
