"""The ``audit_log`` table: who did what to what, and when.

Write audit rows on the same connection/transaction as the change they record, so that both are
kept or both are rolled back. ``details`` is stored as JSON with secrets removed: values under
keys that look like credentials (``api_key``, ``token``, ``secret``, ``password``, ...),
pydantic ``SecretStr`` values, URL passwords and credential query parameters become ``"***"``;
timestamps become ISO strings and NaN/±inf the strings ``"nan"``, ``"inf"``, ``"-inf"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
import pandas as pd
from sqlalchemy import JSON, Connection, Dialect, Table, bindparam, insert, select, text
from sqlalchemy.types import TypeDecorator

from storage._driver import copy_rows, run_many
from storage._redact import is_secret_key, redacted_json
from storage._time import now_ms as _now_ms
from storage.schema import AUDIT_INDEXED_WHERE, ORDER_AUDIT_ACTIONS, AuditLogRow


class _JSONText(TypeDecorator[Any]):
    """``details`` given as its JSON text (serialised by :func:`audit_row`): bound as it is, to
    the JSON column (PostgreSQL casts it as for a JSON value)."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


# built once; the values travel as parameters, ``details`` as its JSON text
_INSERT = insert(cast(Table, AuditLogRow.__table__)).values(details=bindparam("details", type_=_JSONText()))
_COLUMNS = ("at", "actor", "action", "subject", "details")  # an audit_row's, COPY's on PostgreSQL


def _json_text(value: Any) -> str:
    """The JSON text of plain JSON data (as :func:`storage._redact.redacted_json` returns it):
    orjson's (compact, UTF-8; several times faster than ``json``'s encoder, which matters for the
    rows the paper desk writes per order), or, for what orjson cannot write (an integer beyond 64
    bits, a string orjson refuses), ``json``'s in the same compact form (non-ASCII escaped)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"))


_PLAIN_KEYS: dict[tuple[Any, ...], bool] = {}
"""Keys of a ``details`` dict (in order) -> whether all are strings that name no credential (the
OMS's rows repeat a few key sets)."""

_SCALARS = frozenset({str, int, float, bool, type(None)})
"""The value types a ``details`` dict is written as it is with (exactly these: a subclass such
as an enum or a NumPy number goes through the general path)."""


def _details_text(details: Mapping[str, Any]) -> str:
    """``details`` redacted and serialised: the JSON text of :func:`storage._redact.redacted_json`.
    A dict whose keys are plain strings that name no credential and whose values are plain
    scalars is serialised as it is when its text shows nothing to change (no URL, no ``null``:
    orjson writes NaN and infinity as ``null``, the general path as strings): the same text
    without the copy, for the rows a desk writes per order."""
    if type(details) is dict:
        keys = tuple(details)
        plain = _PLAIN_KEYS.get(keys)
        if plain is None:
            plain = all(type(k) is str and not is_secret_key(k) for k in keys)
            if len(_PLAIN_KEYS) < 1024:
                _PLAIN_KEYS[keys] = plain
        if plain and _SCALARS.issuperset(map(type, details.values())):
            try:
                text: str | None = orjson.dumps(details).decode()
            except orjson.JSONEncodeError:  # an integer beyond 64 bits: the general path writes it
                text = None
            if text is not None and "null" not in text and "://" not in text:
                return text
    return _json_text(redacted_json(details))


@dataclass(frozen=True)
class AuditEntry:
    """One row of ``audit_log``; ``at`` is a UTC ``pd.Timestamp``."""

    id: int
    at: pd.Timestamp
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


_CHECKED: set[tuple[str, str]] = set()  # (actor, action) pairs that passed the checks


def audit_row(*, actor: str, action: str, subject: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """The checked values of one ``audit_log`` row stamped now (``at``), ``details`` redacted
    and serialised (its JSON text, as the column's type would write it): what :func:`audit`
    writes. Collect the rows of one change and write them together with
    :func:`write_audit_rows` on the change's connection, before it commits.

    Raises:
        ValueError, TypeError: as :func:`audit`.
    """
    if (actor, action) not in _CHECKED:  # a few pairs repeat: checked once each
        _check_text("actor", actor)
        _check_text("action", action)
        if len(action) > 64:
            raise ValueError(f"action must be at most 64 characters, got {len(action)}")
        if len(actor) > 128:
            raise ValueError(f"actor must be at most 128 characters, got {len(actor)}")
        if len(_CHECKED) < 1024:
            _CHECKED.add((actor, action))
    if type(subject) is not str or not subject or subject.isspace():
        _check_text("subject", subject)
    if type(details) is not dict and not isinstance(details, Mapping):
        raise TypeError(f"details must be a mapping, not {type(details).__name__}")
    return {
        "at": _now_ms(),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": _details_text(details),
    }


def write_audit_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (made by :func:`audit_row`) in their order, in one statement execution
    (an ``executemany``, on the driver's cursor where it can: see :mod:`storage._driver`; on
    PostgreSQL several rows go by one ``COPY``) on ``conn``: in the caller's transaction, like
    :func:`audit`. Nothing is done for no rows."""
    if not rows or (len(rows) > 1 and copy_rows(conn, "audit_log", _COLUMNS, rows)):
        return
    if run_many(conn, _INSERT, rows):
        return
    if len(rows) == 1:
        conn.execute(_INSERT, rows[0])
    elif rows:
        conn.execute(_INSERT, list(rows))


def audit(conn: Connection, *, actor: str, action: str, subject: str, details: Mapping[str, Any]) -> int:
    """Record that ``actor`` did ``action`` to ``subject`` now, and return the audit row's id.

    ``action`` is a short dotted name (``quarantine.release``), ``subject`` what it applied to
    (``quarantine:42``); ``details`` is stored with secrets removed (see the module docstring).

    Raises:
        ValueError: when ``actor``, ``action`` or ``subject`` is empty, or ``action`` is longer
            than 64 characters or ``actor`` longer than 128.
        TypeError: when ``details`` is not a mapping.
    """
    result = conn.execute(_INSERT, audit_row(actor=actor, action=action, subject=subject, details=details))
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported dialect reports it
        raise RuntimeError("the database did not report the new audit row's id")
    return int(key[0])


def list_audit(conn: Connection, *, action: str | None = None) -> list[AuditEntry]:
    """Recorded audit rows, oldest first, optionally only those of ``action``."""
    query = select(AuditLogRow.__table__).order_by(AuditLogRow.id)
    if action is not None:
        query = query.where(AuditLogRow.action == action)
        if action not in ORDER_AUDIT_ACTIONS:  # the partial index's own term, for SQLite to use it
            query = query.where(text(AUDIT_INDEXED_WHERE))
    return [
        AuditEntry(
            id=row.id,
            at=pd.Timestamp(int(row.at) * 1_000_000, tz="UTC"),
            actor=row.actor,
            action=row.action,
            subject=row.subject,
            details=dict(row.details),
        )
        for row in conn.execute(query).all()
    ]
