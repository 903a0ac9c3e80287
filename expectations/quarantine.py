"""A person's decisions on quarantined rows: release (re-screen with the failed expectations
waived, then store) or drop. Both are logged in ``audit_log``; both are all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine

from config.flows import InputError
from config.settings import Settings
from expectations.screening import Screened, history_before, policy_for, screen, store_screened
from market.bars import BAR_COLUMNS, canonical_bars
from storage.assets import list_assets
from storage.quarantine import QuarantineEntry, decide_quarantine, get_quarantine


@dataclass(frozen=True)
class Released:
    """A quarantined row that a person released and that is now a stored bar."""

    id: int
    symbol: str
    timeframe: str
    ts: pd.Timestamp


def _bar_from_entry(entry: QuarantineEntry) -> pd.DataFrame:
    if entry.ts is None or not all(c in entry.row for c in BAR_COLUMNS):
        raise InputError(
            f"quarantine row {entry.id} cannot become a bar ({entry.reasons}); "
            "fix the source file and ingest it again, or drop the row"
        )
    values = {c: float(entry.row[c]) for c in BAR_COLUMNS}
    return canonical_bars(pd.DataFrame(values, index=pd.DatetimeIndex([entry.ts], name="ts")))


def release_quarantined(
    engine: Engine, ids: Sequence[int], *, settings: Settings, actor: str, note: str = ""
) -> list[Released]:
    """Release quarantined rows: re-run the suite with each row's failed expectations waived.

    A row that passes with its waivers is stored in ``bars``; the decision is logged in
    ``audit_log`` and the re-validation in ``validation_results``. All or nothing.

    Raises:
        LookupError: an unknown id. ValueError: a row already decided.
        InputError: a row that cannot become a bar, or fails other expectations; nothing is written.
    """
    policy = policy_for(settings)
    with engine.connect() as conn:
        entries = get_quarantine(conn, ids)
        assets = {a.symbol: a for a in list_assets(conn)}
        decided = [e for e in entries if e.status != "quarantined"]
        if decided:
            raise InputError(
                "already decided: "
                + ", ".join(f"{e.id} ({e.status})" for e in decided)
                + "; nothing was changed"
            )
        plans: list[tuple[QuarantineEntry, Screened]] = []
        for entry in entries:
            bar = _bar_from_entry(entry)
            asset = assets.get(entry.symbol)
            if asset is None:
                raise InputError(f"quarantine row {entry.id}: {entry.symbol} is not a registered asset")
            lookback = policy.return_bound(asset.asset_class.value, entry.timeframe).window + 2
            history = history_before(conn, entry.symbol, entry.timeframe, bar.index[0], lookback)
            screened = screen(
                bar,
                symbol=entry.symbol,
                timeframe=entry.timeframe,
                calendar=asset.calendar,
                asset_class=asset.asset_class.value,
                policy=policy,
                history=history,
                waived={bar.index[0]: entry.failed_expectations},
                docs=None,
            )
            if screened.rejected:
                raise InputError(
                    f"quarantine row {entry.id} still fails with its expectations waived: "
                    f"{screened.rejected[0].reasons}; nothing was changed"
                )
            plans.append((entry, screened))
    batch_id = uuid.uuid4().hex
    with engine.begin() as conn:
        for entry, screened in plans:
            store_screened(
                conn,
                screened,
                symbol=entry.symbol,
                timeframe=entry.timeframe,
                source=entry.source,
                batch_id=batch_id,
                trigger="release",
            )
        decide_quarantine(conn, [e.id for e, _ in plans], status="released", actor=actor, note=note)
    return [Released(id=e.id, symbol=e.symbol, timeframe=e.timeframe, ts=s.good.index[0]) for e, s in plans]


def drop_quarantined(engine: Engine, ids: Sequence[int], *, actor: str, note: str = "") -> None:
    """Mark quarantined rows as dropped (a person's decision, logged). Nothing reaches ``bars``.

    Raises:
        LookupError: an unknown id. InputError: a row already decided; nothing is written.
    """
    try:
        with engine.begin() as conn:
            decide_quarantine(conn, ids, status="dropped", actor=actor, note=note)
    except ValueError as exc:
        raise InputError(f"{exc}; nothing was changed") from None
