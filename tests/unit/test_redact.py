""":func:`storage._redact.redacted_json`'s one-pass path for plain dicts (the audit rows' details)
gives exactly what the general path gives: secrets under credential-like keys, URL passwords and
credential query parameters as ``***``, NaN/±inf as strings, nested and odd values alike."""

from __future__ import annotations

import datetime as dt
import enum
import importlib
import json
import math
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from storage._redact import _jsonable, finite_json, redacted_json


class _Kind(enum.StrEnum):
    A = "a://x:pw@host"


class _Level(enum.IntEnum):
    ONE = 1


def _general(value: Any) -> Any:
    return finite_json(_jsonable(value))


def _same(a: Any, b: Any) -> bool:
    """Equal with types, NaN equal to NaN, keys in the same order."""
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def test_audit_details_are_redacted_as_by_the_general_path() -> None:
    details = {
        "account": "paper", "from": "new", "to": "submitted", "quantity": 10.0, "fill_id": 3,
        "late": False, "reject_code": None, "nan": math.nan, "inf": math.inf, "minus_inf": -math.inf,
        "api_key": "k", "Token": 5, "url": "https://u:secret@host/p?apikey=1&x=2", "plain": "no url",
        "when": pd.Timestamp("2024-01-02", tz="UTC"), "day": dt.date(2024, 1, 2), "np": np.float64("nan"),
        "np_int": np.int64(3), "nested": {"password": "p", "ok": [1, math.nan, {"auth": "x"}]},
        "tuple": (1, 2), "secret_str": SecretStr("s"), "kind": _Kind.A, "level": _Level.ONE,
        7: "int key", True: "bool key", None: "none key",
    }  # fmt: skip
    got = redacted_json(details)
    assert _same(got, _general(details))
    assert got["api_key"] == got["Token"] == "***" and got["nested"]["password"] == "***"
    assert got["url"] == "https://u:***@host/p?apikey=***&x=2"
    assert got["nan"] == "nan" and got["minus_inf"] == "-inf"
    assert redacted_json({"api_key": "again"}) == {"api_key": "***"}  # a remembered key


_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["http://a:b@c/d?token=1", "x://y", "://"])
)  # fmt: skip
_keys = (
    st.text(max_size=10) | st.sampled_from(["secret", "PASSWD", "api-key", "cookie", "id"]) | st.integers()
)
_details = st.dictionaries(
    _keys,
    st.recursive(
        _leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c, max_size=3), max_leaves=6
    ),
    max_size=8,
)


@settings(deadline=None)
@given(_details)
def test_any_dict_is_redacted_as_by_the_general_path(details: dict[Any, Any]) -> None:
    assert _same(redacted_json(details), _general(details))


def _stored_text(details: dict[Any, Any]) -> str:
    """The JSON text the general path stores for ``details``: its redacted data, serialised."""
    text = importlib.import_module("storage.audit")._json_text(_general(details))
    assert json.loads(text) == _general(details)  # the text is the redacted data
    return text


_PLAIN = {
    "account": "paper", "from": "new", "to": "submitted", "quantity": 10.0, "fill_id": 3, "late": False,
    "kind": _Kind.A.name, "big": 2**62, "price": 1e-05, "café": "naïve",
}  # fmt: skip


@settings(deadline=None)
@given(_details)
def test_audit_text_is_the_general_paths_for_any_dict(details: dict[Any, Any]) -> None:
    from storage.audit import _details_text

    assert _details_text(details) == _stored_text(details)


def test_a_plain_dict_is_written_as_it_is_and_anything_else_by_the_general_path(monkeypatch: Any) -> None:
    """The OMS's rows (string keys naming no credential, scalar values) skip the copy; a dict with
    anything to change goes through redaction, and both give the general path's text."""
    audit_module = importlib.import_module("storage.audit")  # `import storage.audit` names the function
    calls: list[Any] = []
    general = audit_module.redacted_json
    monkeypatch.setattr(audit_module, "redacted_json", lambda v: calls.append(v) or general(v))
    assert audit_module._details_text(_PLAIN) == _stored_text(_PLAIN) and calls == []
    for change in (
        {"api_key": "k"}, {"url": "https://u:pw@host/"}, {"nan": math.nan}, {"inf": -math.inf},
        {"when": pd.Timestamp("2024-01-02", tz="UTC")}, {"nested": {"password": "p"}},
        {"np_int": np.int64(3)}, {"np": np.float64(2.5)}, {"secret": SecretStr("s")}, {"kind": _Kind.A},
        {"level": _Level.ONE}, {"legs": (1, 2.5)}, {"none": None}, {"huge": 2**70}, {True: "bool key"},
        {7: "int key"},
    ):  # fmt: skip
        details = {**_PLAIN, **change}
        calls.clear()
        assert audit_module._details_text(details) == _stored_text(details)
        assert calls == [details], change
