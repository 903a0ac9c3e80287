"""Turning values into plain JSON data before they are stored (private to ``storage``).

:func:`redacted_json` removes secrets: values under keys that look like credentials
(``api_key``, ``token``, ``secret``, ``password``, ...), pydantic ``SecretStr`` values, URL
passwords and credential query parameters become ``"***"``. :func:`finite_json` makes a JSON
value storable on every backend (PostgreSQL rejects ``NaN`` and ``Infinity`` in JSON) by writing
non-finite floats as the strings ``"nan"``, ``"inf"`` and ``"-inf"``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd
from pydantic import SecretBytes, SecretStr

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential|auth|signature|cookie)",
    re.IGNORECASE,
)


def _scrub_url(text: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_KEY.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data with secrets replaced by ``***``."""
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): REDACTED if _SECRET_KEY.search(str(k)) else _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _scrub_url(value) if "://" in value else value
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def finite_json(value: Any) -> Any:
    """Plain JSON data ``value`` (as :func:`_jsonable` returns it) with NaN/±inf floats as strings."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def redacted_json(value: Any) -> Any:
    """``value`` as storable JSON data with secrets replaced by ``***`` and NaN/±inf as strings."""
    if type(value) is dict:
        return _redacted_dict(value)
    return finite_json(_jsonable(value))


_SECRET_KEYS: dict[str, bool] = {}  # key -> whether it names a credential (keys repeat: audit rows)


def is_secret_key(key: str) -> bool:
    secret = _SECRET_KEYS.get(key)
    if secret is None:
        secret = _SECRET_KEY.search(key) is not None
        if len(_SECRET_KEYS) < 4096:
            _SECRET_KEYS[key] = secret
    return secret


def _redacted_dict(value: dict[Any, Any]) -> dict[str, Any]:
    """:func:`redacted_json` of a plain dict in one pass: the same result as
    ``finite_json(_jsonable(value))``, with its plain values (exact ``str``, ``int``, ``bool``,
    ``float``, None) handled here and any other value by the general path."""
    out: dict[str, Any] = {}
    known = _SECRET_KEYS
    for k, v in value.items():
        key = k if type(k) is str else str(k)
        secret = known.get(key)
        if secret is None:
            secret = is_secret_key(key)
        if secret:
            out[key] = REDACTED
            continue
        kind = type(v)
        if kind is str:
            out[key] = _scrub_url(v) if "://" in v else v
        elif v is None or kind is int or kind is bool:
            out[key] = v
        elif kind is float:
            out[key] = v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        else:
            out[key] = finite_json(_jsonable(v))
    return out


def plain_json(value: Any) -> Any:
    """``value`` as storable JSON data, nothing redacted: numpy scalars as Python numbers,
    timestamps as ISO strings, NaN/±inf as strings, other objects as ``str``, keys as ``str``."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain_json(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return finite_json(value)
    if value is pd.NaT:
        return "NaT"
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return plain_json(value.item())
    return str(value)
