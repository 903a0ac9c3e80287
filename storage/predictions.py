"""What the REST service answered (table ``predictions``): one row per series per model scored.

Rows are written in batches by the service's background writer (:func:`record_predictions`),
read back for audits (:func:`list_predictions`) and for drift (:func:`served_features`: the raw
feature rows the service was asked about).

::

    record_predictions(conn, [Prediction(request_id="ab12", model="fks-forecaster", ...)])
    served_features(conn, "fks-forecaster", since=pd.Timestamp.now(tz="UTC") - pd.Timedelta("1D"))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Connection, insert, select

from storage._time import from_ms, now_ms, optional_ms, to_ms
from storage.schema import PredictionRow

_TABLE = PredictionRow.__table__


@dataclass(frozen=True)
class Prediction:
    """One scored series.

    ``output``: the answer (name -> number); ``features``: the raw feature row the answer was
    made at (name -> number), or None when the model has no feature rows; ``shadow``: scored by
    a challenger in shadow mode, not returned to the caller.
    """

    request_id: str
    model: str
    version: str
    alias: str
    symbol: str
    bar_ts: pd.Timestamp | None
    output: Mapping[str, float]
    latency_ms: float
    features: Mapping[str, float] | None = None
    key_id: int | None = None
    shadow: bool = False
    served_at: pd.Timestamp = field(default_factory=lambda: from_ms(now_ms()))


def _json(values: Mapping[str, float]) -> str:
    # NaN/inf are not JSON: stored as null
    return json.dumps({k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()})


def record_predictions(conn: Connection, rows: Sequence[Prediction]) -> int:
    """Insert ``rows`` in one statement; returns how many were written."""
    if not rows:
        return 0
    conn.execute(
        insert(PredictionRow),
        [
            {
                "request_id": r.request_id,
                "served_at": to_ms(r.served_at),
                "model": r.model,
                "version": r.version,
                "alias": r.alias,
                "symbol": r.symbol,
                "bar_ts": optional_ms(r.bar_ts),
                "output": _json(r.output),
                "features": None if r.features is None else _json(r.features),
                "latency_ms": float(r.latency_ms),
                "key_id": r.key_id,
                "shadow": int(bool(r.shadow)),
            }
            for r in rows
        ],
    )
    return len(rows)


def list_predictions(
    conn: Connection,
    *,
    model: str | None = None,
    request_id: str | None = None,
    since: pd.Timestamp | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Stored predictions, oldest first, as a frame (``output``/``features`` decoded to dicts;
    ``served_at``/``bar_ts`` UTC timestamps; ``shadow`` bool)."""
    query = select(_TABLE).order_by(_TABLE.c.id)
    if model is not None:
        query = query.where(_TABLE.c.model == model)
    if request_id is not None:
        query = query.where(_TABLE.c.request_id == request_id)
    if since is not None:
        query = query.where(_TABLE.c.served_at >= to_ms(since, "since"))
    if limit is not None:
        query = query.limit(int(limit))
    rows = conn.execute(query).mappings().all()
    columns = [c.name for c in _TABLE.columns]
    frame = pd.DataFrame([dict(r) for r in rows], columns=columns)
    if frame.empty:
        return frame
    frame["served_at"] = pd.to_datetime(frame["served_at"], unit="ms", utc=True)
    frame["bar_ts"] = pd.to_datetime(frame["bar_ts"], unit="ms", utc=True)
    frame["output"] = frame["output"].map(json.loads)
    frame["features"] = frame["features"].map(lambda v: None if v is None else json.loads(v))
    frame["shadow"] = frame["shadow"].astype(bool)
    return frame


def served_features(
    conn: Connection,
    model: str,
    *,
    since: pd.Timestamp | None = None,
    version: str | None = None,
    include_shadow: bool = False,
) -> pd.DataFrame:
    """The raw feature rows ``model`` was asked about (one row per scored series, one column per
    feature), from ``since`` on, of one ``version`` or all; shadow rows only when asked."""
    query = select(_TABLE.c.features, _TABLE.c.version, _TABLE.c.shadow).where(
        _TABLE.c.model == model, _TABLE.c.features.is_not(None)
    )
    if since is not None:
        query = query.where(_TABLE.c.served_at >= to_ms(since, "since"))
    if version is not None:
        query = query.where(_TABLE.c.version == str(version))
    if not include_shadow:
        query = query.where(_TABLE.c.shadow == 0)
    rows = [json.loads(r.features) for r in conn.execute(query.order_by(_TABLE.c.id))]
    return pd.DataFrame(rows, dtype=float)
