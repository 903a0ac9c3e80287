"""The ``promotions`` table: every decision of the promotion gate, and every rollback, in order.

One row per decision about one registered model: ``promoted``, ``refused``, ``forced`` (promoted
over failed checks) or ``rolled_back``. A row keeps what was compared (the primary metric, the
challenger's, champion's and best baseline's values on it, the backtest window), the reasons as
a list of sentences, the gate's metrics snapshot, who decided and the tearsheet of the backtests
it was decided on (the gate run's own report folder, never overwritten). Write the row on the same
connection/transaction as the audit entry of the same action::

    with engine.begin() as conn:
        record_promotion(
            conn, model_name="fks-forecaster", challenger_version="3", champion_version="2",
            decision=decision.outcome, primary_metric="sharpe", challenger_value=0.61,
            champion_value=0.42, baseline_name="buy_and_hold", baseline_value=0.30,
            window_start="2024-01-01", window_end="2024-06-30",
            reasons=decision.reasons, metrics=decision.metrics, actor="ci",
        )
        story = list_promotions(conn, "fks-forecaster")   # oldest first

Values that are NaN or infinite are stored as NULL; ``metrics`` is stored as JSON (numpy
scalars as Python numbers, timestamps as ISO strings, NaN/±inf as the strings ``"nan"``,
``"inf"``, ``"-inf"``).
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, insert, select

from storage._redact import plain_json
from storage._time import now_ms as _now_ms
from storage._time import optional_ts, to_ms
from storage.schema import PROMOTION_DECISIONS, PromotionRow

_ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class PromotionRecord:
    """One row of ``promotions``; ``window_start``, ``window_end`` (None for a rollback) and
    ``decided_at`` are UTC ``pd.Timestamp``."""

    id: int
    model_name: str
    challenger_version: str
    champion_version: str | None
    decision: str
    primary_metric: str | None
    challenger_value: float | None
    champion_value: float | None
    baseline_name: str | None
    baseline_value: float | None
    window_start: pd.Timestamp | None
    window_end: pd.Timestamp | None
    reasons: list[str]
    metrics: dict[str, Any]
    actor: str
    decided_at: pd.Timestamp
    tearsheet: str | None = None
    """The tearsheet of the backtests the gate decided on (None for a rollback, or rows recorded
    before migration 0011)."""


def _text(name: str, value: object, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{name} must be at most {max_len} characters, got {len(value)}")
    return value


def _version(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"{name} must be a version string or int, not {type(value).__name__}")
    return _text(name, str(value), 32)


def _value(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or None, not {type(value).__name__}")
    number = float(value)
    return number if math.isfinite(number) else None


def record_promotion(
    conn: Connection,
    *,
    model_name: str,
    challenger_version: str | int,
    decision: str,
    actor: str,
    champion_version: str | int | None = None,
    primary_metric: str | None = None,
    challenger_value: float | None = None,
    champion_value: float | None = None,
    baseline_name: str | None = None,
    baseline_value: float | None = None,
    window_start: pd.Timestamp | dt.datetime | str | None = None,
    window_end: pd.Timestamp | dt.datetime | str | None = None,
    reasons: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    tearsheet: str | None = None,
) -> int:
    """Record one gate decision (or rollback) about ``model_name`` now, and return the row's id.

    Args:
        conn: a connection in the caller's transaction.
        model_name: the registered model.
        challenger_version: the version decided on (for ``rolled_back``, the version that is
            champion again).
        decision: ``promoted``, ``refused``, ``forced`` or ``rolled_back``
            (:attr:`models.gate.Decision.outcome` gives the first three).
        actor: who or what decided (a user, ``ci``, a flow name).
        champion_version: the champion when it was decided; None when there was none.
        primary_metric: the metric compared; required except for ``rolled_back``.
        challenger_value, champion_value, baseline_value: the values on ``primary_metric``
            (None, NaN or ±inf are stored as NULL).
        baseline_name: the best baseline; required except for ``rolled_back``.
        window_start, window_end: the backtest window (naive values are UTC); required except
            for ``rolled_back``.
        reasons: the sentences behind the decision; at least one except for ``rolled_back``.
        metrics: the gate's snapshot (:attr:`models.gate.Decision.metrics`).
        tearsheet: the path of the tearsheet of the backtests decided on (the gate run's own
            report folder), or None.

    Raises:
        ValueError: an empty or too long name, version or actor; an unknown ``decision``; a
            gate decision without ``primary_metric``, ``baseline_name``, window or reasons; a
            window that is not two timestamps or ends before it starts; an empty reason.
        TypeError: a value that is not a number, ``reasons`` not a list of strings or
            ``metrics`` not a mapping.
    """
    _text("model_name", model_name, 256)
    challenger = _version("challenger_version", challenger_version)
    champion = None if champion_version is None else _version("champion_version", champion_version)
    if decision not in PROMOTION_DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {', '.join(PROMOTION_DECISIONS)}")
    _text("actor", actor, 128)
    gate = decision != _ROLLED_BACK
    if primary_metric is not None or gate:
        _text("primary_metric", primary_metric, 64)
    if baseline_name is not None or gate:
        _text("baseline_name", baseline_name, 64)
    if gate and (window_start is None or window_end is None):
        raise ValueError(f"a {decision!r} decision needs its backtest window (window_start, window_end)")
    start = None if window_start is None else to_ms(window_start, "window_start")
    end = None if window_end is None else to_ms(window_end, "window_end")
    if start is not None and end is not None and end < start:
        raise ValueError(f"window_end {window_end} is before window_start {window_start}")
    if isinstance(reasons, str | bytes) or not isinstance(reasons, Sequence):
        raise TypeError(f"reasons must be a list of strings, not {type(reasons).__name__}")
    for reason in reasons:
        if not isinstance(reason, str):
            raise TypeError(f"every reason must be a string, got {type(reason).__name__}")
        if not reason.strip():
            raise ValueError("reasons must not contain empty strings")
    if gate and not reasons:
        raise ValueError(f"a {decision!r} decision needs at least one reason")
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, not {type(metrics).__name__}")
    if tearsheet is not None:
        _text("tearsheet", tearsheet, 4096)
    result = conn.execute(
        insert(PromotionRow).values(
            model_name=model_name,
            challenger_version=challenger,
            champion_version=champion,
            decision=decision,
            primary_metric=primary_metric,
            challenger_value=_value("challenger_value", challenger_value),
            champion_value=_value("champion_value", champion_value),
            baseline_name=baseline_name,
            baseline_value=_value("baseline_value", baseline_value),
            window_start=start,
            window_end=end,
            reasons=list(reasons),
            metrics=plain_json(dict(metrics or {})),
            actor=actor,
            decided_at=_now_ms(),
            tearsheet=tearsheet,
        )
    )
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported dialect reports it
        raise RuntimeError("the database did not report the new promotion row's id")
    return int(key[0])


def list_promotions(conn: Connection, model_name: str | None = None) -> list[PromotionRecord]:
    """Recorded decisions, oldest first (the order they were made), optionally of one model only."""
    query = select(PromotionRow.__table__).order_by(PromotionRow.id)
    if model_name is not None:
        query = query.where(PromotionRow.model_name == model_name)
    return [
        PromotionRecord(
            id=row.id,
            model_name=row.model_name,
            challenger_version=row.challenger_version,
            champion_version=row.champion_version,
            decision=row.decision,
            primary_metric=row.primary_metric,
            challenger_value=None if row.challenger_value is None else float(row.challenger_value),
            champion_value=None if row.champion_value is None else float(row.champion_value),
            baseline_name=row.baseline_name,
            baseline_value=None if row.baseline_value is None else float(row.baseline_value),
            window_start=optional_ts(row.window_start),
            window_end=optional_ts(row.window_end),
            reasons=[str(r) for r in row.reasons],
            metrics=dict(row.metrics),
            actor=row.actor,
            decided_at=pd.Timestamp(int(row.decided_at) * 1_000_000, tz="UTC"),
            tearsheet=row.tearsheet,
        )
        for row in conn.execute(query).all()
    ]
