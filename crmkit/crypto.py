"""Encryption of customers' personal data at rest, its search indexes, and the audit key.

Key hierarchy (each level wrapped with AES-256-GCM by the one above it)::

    master key            outside the database (CRMKIT_MASTER_KEY / _FILE)
      └─ tenant key       one per tenant, stored wrapped; AAD = tenant id
           └─ data key    one per customer, stored wrapped; AAD = tenant id + customer id
                └─ fields AES-256-GCM; AAD = tenant, customer, table, column, row

Why this shape: a database dump alone reveals no personal data; a tenant's data can
be re-keyed or destroyed without touching other tenants; and erasing a customer's
wrapped data key makes every copy of their fields unreadable that does not also carry
that key ("crypto-shredding"). Wrapped keys live in their own tables
(``tenant_keys``, ``customer_keys``) so that operators can back them up on a shorter
retention than the data: once the last copy of a key has expired, the data's backups
are unreadable too (docs/operator.md). The AAD binds every ciphertext to where it belongs, so a
ciphertext or wrapped key copied to another row, column, customer or tenant fails to
decrypt with :class:`DecryptionError`. AAD does not stop a rollback (putting back an
older ciphertext of the same field of the same row); the audit trail covers that.

Every ciphertext and wrapped key has one compact format, stored as bytes
(``LargeBinary``)::

    version (1 byte) || nonce (12 random bytes) || ciphertext || tag (16 bytes)

Nonces are random: with 96-bit nonces a key stays well inside the safe bound (2**32
messages) because each data key encrypts one customer's fields and each tenant key
wraps one key per customer.

Exact search uses keyed blind indexes (:meth:`TenantKeys.blind_index`,
:meth:`TenantKeys.name_tokens`); the audit trail's checkpoints are signed with an
Ed25519 key held outside the database (:class:`AuditSigner`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import tempfile
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crmkit.settings import ConfigurationError, Settings

__all__ = [
    "DEV_AUDIT_KEY_FILE",
    "DEV_MASTER_KEY_FILE",
    "AuditSigner",
    "DataKey",
    "DataKeyCache",
    "DecryptionError",
    "IndexKind",
    "MasterKey",
    "TenantKeys",
    "name_words",
    "new_master_key_text",
    "new_tenant_key",
    "normalise_email",
    "normalise_national_id",
    "normalise_phone",
    "unwrap_tenant_key",
    "verify_audit_signature",
]

VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
BLIND_INDEX_SIZE = 16

DEV_MASTER_KEY_FILE = "dev-master.key"
DEV_AUDIT_KEY_FILE = "dev-audit-key.pem"

# Domain-separation labels: a value sealed for one purpose never opens as another.
_TENANT_WRAP_INFO = b"crmkit tenant key wrap v1"
_DATA_WRAP_INFO = b"crmkit data key wrap v1"
_TENANT_KEY_AAD = b"crmkit tenant key v1"
_DATA_KEY_AAD = b"crmkit data key v1"
_FIELD_AAD = b"crmkit field v1"
_BLIND_INDEX_INFO = b"crmkit blind index v1 "
_SETTING_INFO = b"crmkit tenant setting v1"
_SETTING_AAD = b"crmkit setting v1"

IndexKind = Literal["email", "phone", "national_id", "external_ref"]
"""The kinds of exact-match blind index; names are indexed word by word (name_tokens).
``external_ref`` keeps an erased customer's reference as an index only, so the record
it came from cannot create the customer again."""

RowId = uuid.UUID | str


class DecryptionError(Exception):
    """A ciphertext or wrapped key did not authenticate.

    It was tampered with, truncated, or it belongs to another tenant, customer, table,
    column or row (or another key). Which of these is deliberately not knowable.
    """

    def __init__(self, message: str = "ciphertext does not authenticate") -> None:
        super().__init__(message)


# --- primitives --------------------------------------------------------------------------


def _hkdf(key: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    """A subkey for one purpose, so no key is ever used for two algorithms."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def _aad(label: bytes, *parts: bytes | str | uuid.UUID) -> bytes:
    """Length-prefixed encoding: no two different part lists give the same AAD."""
    out = bytearray([VERSION])
    for part in (label, *parts):
        if isinstance(part, uuid.UUID):
            data = part.bytes
        elif isinstance(part, str):
            data = part.encode("utf-8")
        else:
            data = bytes(part)
        out += len(data).to_bytes(4, "big")
        out += data
    return bytes(out)


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return bytes([VERSION]) + nonce + aead.encrypt(nonce, plaintext, aad)


def _open(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    blob = bytes(blob)  # drivers may hand back memoryview
    if len(blob) < 1 + NONCE_SIZE + TAG_SIZE:
        raise DecryptionError("ciphertext is truncated")
    if blob[0] != VERSION:
        raise DecryptionError(f"unknown ciphertext version {blob[0]}")
    try:
        return aead.decrypt(blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :], aad)
    except InvalidTag:
        raise DecryptionError() from None


def _check_key(raw: bytes) -> bytes:
    raw = bytes(raw)
    if len(raw) != KEY_SIZE:
        raise ValueError(f"a key is {KEY_SIZE} bytes, not {len(raw)}")
    return raw


def _check_uuid(value: uuid.UUID, what: str) -> uuid.UUID:
    if not isinstance(value, uuid.UUID):
        raise TypeError(f"{what} must be a uuid.UUID, not {type(value).__name__}")
    return value


# --- master key --------------------------------------------------------------------------


def new_master_key_text() -> str:
    """A fresh master key as base64url text: the format CRMKIT_MASTER_KEY(_FILE) takes."""
    return base64.urlsafe_b64encode(os.urandom(KEY_SIZE)).decode("ascii").rstrip("=")


class MasterKey:
    """The platform master key; it only wraps tenant keys (through an HKDF subkey)."""

    __slots__ = ("_wrap",)

    def __init__(self, raw: bytes) -> None:
        self._wrap = AESGCM(_hkdf(_check_key(raw), _TENANT_WRAP_INFO))

    def __repr__(self) -> str:
        return "MasterKey(<secret>)"

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """Parse base64url (padding optional, surrounding whitespace ignored) of 32 bytes."""
        text = text.strip()
        try:
            raw = base64.b64decode(
                text.translate(str.maketrans("-_", "+/")) + "=" * (-len(text) % 4),
                validate=True,
            )
        except (binascii.Error, ValueError):
            raise ValueError("the master key is not valid base64url") from None
        if len(raw) != KEY_SIZE:
            raise ValueError(f"the master key must decode to {KEY_SIZE} bytes, not {len(raw)}")
        return cls(raw)

    @classmethod
    def load(cls, settings: Settings) -> MasterKey:
        """The configured master key; in development mode one is generated on first use.

        A configured file that does not exist is an error even in development mode:
        silently generating a new key would make existing data unreadable.
        """
        if settings.master_key is not None and settings.master_key_file is not None:
            raise ConfigurationError(
                "both CRMKIT_MASTER_KEY and CRMKIT_MASTER_KEY_FILE are set; set only one"
            )
        if settings.master_key is not None:
            text, source = settings.master_key.get_secret_value(), "CRMKIT_MASTER_KEY"
        elif settings.master_key_file is not None:
            path = settings.master_key_file
            if not path.is_file():
                raise ConfigurationError(f"CRMKIT_MASTER_KEY_FILE {path} does not exist")
            text, source = path.read_bytes().decode("ascii", "replace"), f"master key file {path}"
        elif settings.dev_mode:
            path = settings.data_dir / DEV_MASTER_KEY_FILE
            data = _load_or_create(path, lambda: (new_master_key_text() + "\n").encode())
            text, source = data.decode("ascii", "replace"), f"development master key file {path}"
        else:
            raise ConfigurationError(
                "no master key: set CRMKIT_MASTER_KEY (base64url of 32 random bytes) or "
                "CRMKIT_MASTER_KEY_FILE; outside development mode crmkit never generates "
                "its own master key."
            )
        try:
            return cls.from_text(text)
        except ValueError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None


def new_tenant_key(master: MasterKey, tenant_id: uuid.UUID) -> tuple[TenantKeys, bytes]:
    """A fresh tenant key, and its wrapped form to store with the tenant."""
    _check_uuid(tenant_id, "tenant_id")
    raw = os.urandom(KEY_SIZE)
    wrapped = _seal(master._wrap, raw, _aad(_TENANT_KEY_AAD, tenant_id))
    return TenantKeys(tenant_id, raw), wrapped


def unwrap_tenant_key(
    master: MasterKey, tenant_id: uuid.UUID, wrapped: bytes, data_keys: DataKeyCache | None = None
) -> TenantKeys:
    """The tenant's keys; :class:`DecryptionError` if ``wrapped`` is not this tenant's.
    With ``data_keys`` they keep the data keys they unwrap there."""
    _check_uuid(tenant_id, "tenant_id")
    raw = _open(master._wrap, wrapped, _aad(_TENANT_KEY_AAD, tenant_id))
    return TenantKeys(tenant_id, raw, data_keys)


# --- tenant keys and blind indexes -------------------------------------------------------


def normalise_email(value: str) -> str:
    """Unicode NFC, trimmed, lowercased. Deliberately nothing provider-specific
    (no dropping of dots or ``+tags``): two addresses match only if they are the same
    address up to case."""
    return unicodedata.normalize("NFC", value).strip().lower()


def normalise_phone(value: str) -> str:
    """Decimal digits (any script, as ASCII) and a leading ``+``; everything else dropped.

    No country inference: ``+44 20 7946 0000`` and ``020 7946 0000`` differ. Store
    numbers in E.164 if they must match across notations.
    """
    text = unicodedata.normalize("NFKC", value).strip()
    digits = "".join(str(unicodedata.decimal(ch)) for ch in text if ch.isdecimal())
    return "+" + digits if text.startswith("+") and digits else digits


def normalise_national_id(value: str) -> str:
    """Unicode NFKC, letters and digits only, uppercased (``ab-12 34`` → ``AB1234``)."""
    text = unicodedata.normalize("NFKC", value)
    return "".join(ch for ch in text if ch.isalnum()).upper()


_WORD = re.compile(r"[^\W_]+")


def name_words(name: str) -> set[str]:
    """The words of a name, folded so spelling variants meet.

    Casefolded, NFKD with combining marks removed (``José`` → ``jose``), split on
    anything that is not a letter or digit (``María-López`` → ``maria``, ``lopez``;
    ``O'Brien`` → ``o``, ``brien``). Scripts without spaces (Chinese, Japanese) give
    the whole run as one word, so they match whole names only.
    """
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("M"))
    return set(_WORD.findall(text))


_NORMALISERS: dict[str, Callable[[str], str]] = {
    "email": normalise_email,
    "phone": normalise_phone,
    "national_id": normalise_national_id,
    "external_ref": str.strip,
}


class TenantKeys:
    """A tenant's unwrapped key: wraps its customers' data keys and keys its blind indexes.

    The raw key is only ever an HKDF input; the wrapping key and one blind-index key
    per kind are derived from it (and cached), so no key serves two algorithms.
    """

    __slots__ = ("_data_keys", "_index_keys", "_raw", "_settings", "_wrap", "tenant_id")

    def __init__(self, tenant_id: uuid.UUID, raw: bytes, data_keys: DataKeyCache | None = None) -> None:
        self.tenant_id = _check_uuid(tenant_id, "tenant_id")
        self._raw = _check_key(raw)
        self._wrap = AESGCM(_hkdf(self._raw, _DATA_WRAP_INFO))
        self._index_keys: dict[str, bytes] = {}
        self._settings: AESGCM | None = None
        self._data_keys = data_keys

    def __repr__(self) -> str:
        return f"TenantKeys(tenant_id={self.tenant_id}, <secret>)"

    def _aad(self, customer_id: uuid.UUID) -> bytes:
        return _aad(_DATA_KEY_AAD, self.tenant_id, _check_uuid(customer_id, "customer_id"))

    def new_data_key(self, customer_id: uuid.UUID) -> tuple[DataKey, bytes]:
        """A fresh data key for a customer, and its wrapped form to store with them."""
        raw = os.urandom(KEY_SIZE)
        wrapped = _seal(self._wrap, raw, self._aad(customer_id))
        return DataKey(self.tenant_id, customer_id, raw), wrapped

    def unwrap_data_key(self, customer_id: uuid.UUID, wrapped: bytes) -> DataKey:
        """The customer's data key; :class:`DecryptionError` if ``wrapped`` is not theirs.
        Taken from the data key cache when it holds the key of this very ``wrapped``."""
        wrapped = bytes(wrapped)
        cache = self._data_keys
        key = None if cache is None else cache.get(self.tenant_id, customer_id, wrapped)
        if key is None:
            raw = _open(self._wrap, wrapped, self._aad(customer_id))
            key = DataKey(self.tenant_id, customer_id, raw)
            if cache is not None:
                cache.put(key, wrapped)
        return key

    def forget_data_key(self, customer_id: uuid.UUID) -> None:
        """Drop the customer's data key from the cache: their wrapped key was deleted
        (erasure), so nothing may open their data any more."""
        if self._data_keys is not None:
            self._data_keys.forget(self.tenant_id, customer_id)

    def _setting_aead(self) -> AESGCM:
        if self._settings is None:
            self._settings = AESGCM(_hkdf(self._raw, _SETTING_INFO))
        return self._settings

    def seal_setting(self, plugin: str, name: str, value: str) -> bytes:
        """A secret plugin setting (a provider's password) encrypted under a key derived
        from the tenant key and bound to the tenant, the plugin and the setting's name:
        it is the tenant's, not a customer's, so erasing a customer leaves it readable,
        and offboarding the tenant (destroying its key) makes it unreadable."""
        aad = _aad(_SETTING_AAD, self.tenant_id, plugin, name)
        return _seal(self._setting_aead(), value.encode("utf-8"), aad)

    def open_setting(self, plugin: str, name: str, sealed: bytes) -> str:
        """The setting sealed by :meth:`seal_setting`; :class:`DecryptionError` if it was
        sealed for another tenant, plugin or setting."""
        aad = _aad(_SETTING_AAD, self.tenant_id, plugin, name)
        return _open(self._setting_aead(), sealed, aad).decode("utf-8")

    def _index_key(self, kind: str) -> bytes:
        key = self._index_keys.get(kind)
        if key is None:
            key = _hkdf(self._raw, _BLIND_INDEX_INFO + kind.encode("ascii"))
            self._index_keys[kind] = key
        return key

    def _mac(self, kind: str, normalised: str) -> bytes:
        digest = hmac.digest(self._index_key(kind), normalised.encode("utf-8"), "sha256")
        return digest[:BLIND_INDEX_SIZE]

    def blind_index(self, kind: IndexKind, value: str) -> bytes:
        """The keyed index of ``value`` (normalised for ``kind``), for exact search.

        HMAC-SHA256 under a key derived per tenant and per kind, truncated to 16 bytes.
        The truncation is safe: a truncated HMAC is still unpredictable without the key,
        and 128 bits make an accidental collision within a tenant negligible (about
        n²/2**129 for n values), and a collision would only add a false search hit.

        What an index reveals to someone who reads the database: which rows of the same
        tenant hold equal values of the same kind (and so how often a value repeats) —
        nothing across tenants or kinds, and no value itself, since without the key no
        guess can be checked. Raises ``ValueError`` when nothing remains to index
        (store NULL then, so all empty values do not look equal).
        """
        normaliser = _NORMALISERS.get(kind)
        if normaliser is None:
            raise ValueError(f"unknown blind index kind {kind!r}; names use name_tokens()")
        normalised = normaliser(value)
        if not normalised:
            raise ValueError(f"nothing to index in this {kind} value")
        return self._mac(kind, normalised)

    def name_tokens(self, name: str) -> set[bytes]:
        """Blind indexes of a name's words (:func:`name_words`): store one row per token;
        a search for a name matches the rows holding all of its tokens.

        Reveals, within one tenant, which customers share a name word (and how common
        each word is) — more than an exact index does, which is the price of word search.
        """
        return {self._mac("name", word) for word in name_words(name)}


# --- data keys ---------------------------------------------------------------------------


class DataKey:
    """One customer's data key: encrypts and decrypts their personal data fields."""

    __slots__ = ("_aead", "customer_id", "tenant_id")

    def __init__(self, tenant_id: uuid.UUID, customer_id: uuid.UUID, raw: bytes) -> None:
        self.tenant_id = _check_uuid(tenant_id, "tenant_id")
        self.customer_id = _check_uuid(customer_id, "customer_id")
        self._aead = AESGCM(_check_key(raw))

    def __repr__(self) -> str:
        return f"DataKey(tenant_id={self.tenant_id}, customer_id={self.customer_id}, <secret>)"

    def _aad(self, table: str, column: str, row_id: RowId) -> bytes:
        # A UUID row id and its canonical string give the same AAD.
        return _aad(_FIELD_AAD, self.tenant_id, self.customer_id, table, column, str(row_id))

    def encrypt(self, value: str, *, table: str, column: str, row_id: RowId) -> bytes:
        """``value`` encrypted for one field of one row (table and column as in SQL)."""
        return _seal(self._aead, value.encode("utf-8"), self._aad(table, column, row_id))

    def decrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: RowId) -> str:
        """The field's value; :class:`DecryptionError` if it belongs anywhere else."""
        plaintext = _open(self._aead, ciphertext, self._aad(table, column, row_id))
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("plaintext is not UTF-8") from None


class DataKeyCache:
    """Unwrapped data keys, so a customer's key is unwrapped once per cache window rather
    than once per request that shows them.

    Bounded (least recently used dropped first) and each key kept at most ``seconds``.
    It holds keys, never personal data; an entry answers only for the exact wrapped key
    it was unwrapped from, so a re-wrapped key is unwrapped afresh. Erasing a customer
    (:meth:`TenantKeys.forget_data_key`) and offboarding a tenant (:meth:`forget`) drop
    their keys at once: crypto-shredding does not wait for the window to pass.
    """

    def __init__(self, size: int = 20_000, seconds: float = 300.0) -> None:
        self.size = size
        self.seconds = seconds
        self._keys: OrderedDict[tuple[uuid.UUID, uuid.UUID], tuple[bytes, DataKey, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: tuple[uuid.UUID, uuid.UUID]) -> bool:
        """Whether the (tenant, customer) data key is held."""
        return key in self._keys

    def get(self, tenant_id: uuid.UUID, customer_id: uuid.UUID, wrapped: bytes) -> DataKey | None:
        entry = self._keys.get((tenant_id, customer_id))
        if entry is None or entry[0] != wrapped or entry[2] <= time.monotonic():
            return None
        self._keys.move_to_end((tenant_id, customer_id))
        return entry[1]

    def put(self, key: DataKey, wrapped: bytes) -> None:
        self._keys[(key.tenant_id, key.customer_id)] = (wrapped, key, time.monotonic() + self.seconds)
        self._keys.move_to_end((key.tenant_id, key.customer_id))
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def forget(self, tenant_id: uuid.UUID, customer_id: uuid.UUID | None = None) -> None:
        """Drop one customer's key, or (``customer_id`` None) every key of the tenant."""
        if customer_id is not None:
            self._keys.pop((tenant_id, customer_id), None)
            return
        for entry in [k for k in self._keys if k[0] == tenant_id]:
            del self._keys[entry]


# --- audit signing key -------------------------------------------------------------------


class AuditSigner:
    """The Ed25519 key that signs audit checkpoints; it lives outside the database, so
    whoever can rewrite the database still cannot forge a checkpoint."""

    __slots__ = ("_private", "_public")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public = private_key.public_key()

    def __repr__(self) -> str:
        return f"AuditSigner(key_id={self.key_id})"

    @classmethod
    def from_pem(cls, pem: bytes) -> AuditSigner:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit key must be an Ed25519 private key")
        return cls(key)

    @classmethod
    def load(cls, settings: Settings) -> AuditSigner:
        """The configured audit key; in development mode one is generated on first use."""
        if settings.audit_key_file is not None:
            path = settings.audit_key_file
            if not path.is_file():
                raise ConfigurationError(f"CRMKIT_AUDIT_KEY_FILE {path} does not exist")
            pem = path.read_bytes()
        elif settings.dev_mode:
            path = settings.data_dir / DEV_AUDIT_KEY_FILE
            pem = _load_or_create(path, _new_ed25519_pem)
        else:
            raise ConfigurationError(
                "CRMKIT_AUDIT_KEY_FILE is not set; outside development mode crmkit never "
                "generates its own audit signing key."
            )
        try:
            return cls.from_pem(pem)
        except ValueError as exc:
            raise ConfigurationError(f"audit key file {path}: {exc}") from None

    @property
    def key_id(self) -> str:
        """SHA-256 of the raw public key (hex, 32 chars): names the key in checkpoints."""
        return hashlib.sha256(_raw_public(self._public)).hexdigest()[:32]

    def sign(self, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        return _verify(self._public, data, signature)

    def public_key_pem(self) -> bytes:
        """The public key (SubjectPublicKeyInfo PEM), for auditors to verify with."""
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def verify_audit_signature(public_key_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Verify a checkpoint signature with only the public key (what an auditor holds)."""
    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return _verify(key, data, signature)


def _verify(key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _new_ed25519_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- development key files ---------------------------------------------------------------


def _load_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    """The file's bytes, creating it (mode 0600) first if missing.

    The key is written to a private temporary file and published with a hard link,
    which fails if the name exists: two processes starting together agree on one key,
    and no reader ever sees a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(create())
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_bytes()
