"""API keys of the REST service: created once (the plain key is shown to its owner only then),
kept as SHA-256 hashes, listed, revoked.

::

    key, plain = create_api_key(conn, "research-notebook")   # plain: "fks_..." (print it once)
    find_api_key(conn, plain)                                  # the ApiKey, revoked or not, or None
    revoke_api_key(conn, "research-notebook")
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, insert, select, update

from storage._time import now_ms, optional_ts
from storage.schema import ApiKeyRow

KEY_PREFIX = "fks_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class ApiKey:
    """One key as stored (never the plain key)."""

    id: int
    name: str
    prefix: str
    created_at: pd.Timestamp
    revoked_at: pd.Timestamp | None

    @property
    def revoked(self) -> bool:
        """True once revoked."""
        return self.revoked_at is not None


def hash_key(plain: str) -> str:
    """The SHA-256 hex digest a key is stored as (keys are 256-bit random: no salt needed)."""
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


_TABLE = ApiKeyRow.__table__


def _row(row: Any) -> ApiKey:
    return ApiKey(
        id=int(row.id),
        name=str(row.name),
        prefix=str(row.prefix),
        created_at=pd.Timestamp(int(row.created_at) * 1_000_000, tz="UTC"),
        revoked_at=optional_ts(row.revoked_at),
    )


def create_api_key(conn: Connection, name: str) -> tuple[ApiKey, str]:
    """Create a key named ``name``; returns it and the plain key (shown only now, stored hashed).

    Raises:
        ValueError: a bad name (1-64 of letters, digits, ``_ . -``) or one already used.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"key name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting alphanumeric"
        )
    if conn.execute(select(ApiKeyRow.id).where(ApiKeyRow.name == name)).first() is not None:
        raise ValueError(
            f"a key named {name!r} exists already; pick another name (a revoked key keeps its name)"
        )
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        insert(ApiKeyRow).values(name=name, key_hash=hash_key(plain), prefix=plain[:10], created_at=now_ms())
    )
    row = conn.execute(select(_TABLE).where(_TABLE.c.name == name)).one()
    return _row(row), plain


def list_api_keys(conn: Connection) -> list[ApiKey]:
    """Every key, oldest first, revoked ones included."""
    return [_row(r) for r in conn.execute(select(_TABLE).order_by(_TABLE.c.id)).all()]


def find_api_key(conn: Connection, plain: str) -> ApiKey | None:
    """The stored key whose hash matches ``plain`` (revoked or not), or None."""
    row = conn.execute(select(_TABLE).where(_TABLE.c.key_hash == hash_key(plain))).one_or_none()
    return None if row is None else _row(row)


def revoke_api_key(conn: Connection, name: str) -> ApiKey:
    """Revoke the key named ``name`` (revoking twice keeps the first time).

    Raises:
        LookupError: no key has that name; the message lists the names.
    """
    row = conn.execute(select(_TABLE).where(_TABLE.c.name == name)).one_or_none()
    if row is None:
        names = [k.name for k in list_api_keys(conn)]
        raise LookupError(f"no API key named {name!r}; the keys are: {', '.join(names) or 'none'}")
    if row.revoked_at is None:
        conn.execute(update(ApiKeyRow).where(ApiKeyRow.id == row.id).values(revoked_at=now_ms()))
        row = conn.execute(select(_TABLE).where(_TABLE.c.id == row.id)).one()
    return _row(row)
