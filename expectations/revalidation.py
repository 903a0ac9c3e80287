"""Re-validation of stored series with the ``bars`` suite: bars that now fail move to quarantine.

:func:`validation_targets` lists the stored series to check; :func:`revalidate_series` checks one
(what each ``validate-series`` task of the ``validate`` flow runs)::

    engine = open_store(settings.db_url)
    for target in validation_targets(engine, ["SPX"], None, batch_id="manual"):
        print(revalidate_series(engine, settings, target))
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from config.flows import InputError
from config.settings import Settings
from expectations.screening import (
    docs_dir,
    longest_gap_text,
    policy_for,
    quarantine_reasons,
    record_screen,
    recorded_splits,
    released_waivers,
    screen,
)
from storage.assets import list_assets
from storage.bars import bar_summary, delete_bars, read_bars


class ValidateTarget(BaseModel):
    """One stored series to re-validate."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    calendar: str
    asset_class: str
    batch_id: str


class ValidateOutcome(BaseModel):
    """What re-validating one stored series found."""

    symbol: str
    timeframe: str
    rows_checked: int
    quarantined: int
    warned: int
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    missing_bars: int = 0
    gap_count: int = 0
    longest_gap: str = ""
    docs_path: str = ""


class ValidateSummary(BaseModel):
    """The validate flow's result."""

    batch_id: str
    outcomes: list[ValidateOutcome] = Field(default_factory=list)

    @property
    def quarantined(self) -> int:
        """Rows moved to quarantine across every series."""
        return sum(o.quarantined for o in self.outcomes)


def validation_targets(
    engine: Engine, symbols: Sequence[str], timeframe: str | None, batch_id: str
) -> list[ValidateTarget]:
    """The stored series to re-validate, filtered by symbol and timeframe.

    Raises:
        InputError: a symbol with no stored bars, or no series at all.
    """
    with engine.connect() as conn:
        series = bar_summary(conn)
        assets = {a.symbol: a for a in list_assets(conn)}
    if timeframe is not None:
        series = series[series["timeframe"] == timeframe]
    wanted = {s.upper() for s in symbols}
    unknown = sorted(wanted - set(series["symbol"]))
    if unknown:
        raise InputError(
            f"no stored bars for {', '.join(unknown)}; run `fks ingest` first or check `fks data list`"
        )
    if wanted:
        series = series[series["symbol"].isin(wanted)]
    if series.empty:
        raise InputError("the store has no bars to validate; run `fks ingest` first")
    targets = []
    for row in series.itertuples(index=False):
        asset = assets.get(str(row.symbol))
        if asset is None:
            raise InputError(f"{row.symbol} has bars but no asset entry; ingest it again with --asset-class")
        targets.append(
            ValidateTarget(
                symbol=asset.symbol,
                timeframe=str(row.timeframe),
                calendar=asset.calendar,
                asset_class=asset.asset_class.value,
                batch_id=batch_id,
            )
        )
    return targets


def revalidate_series(engine: Engine, settings: Settings, target: ValidateTarget) -> ValidateOutcome:
    """Re-run the ``bars`` suite on a stored series; failing bars move to quarantine atomically
    (recorded and deleted from ``bars`` in one transaction, with trigger ``validate``).

    Raises:
        ValueError: an unreadable validation policy, or an unknown calendar.
    """
    with engine.connect() as conn:
        bars = read_bars(conn, target.symbol, target.timeframe)
        waived = released_waivers(conn, target.symbol, target.timeframe)
        splits = recorded_splits(conn, target.symbol)
    screened = screen(
        bars,
        symbol=target.symbol,
        timeframe=target.timeframe,
        calendar=target.calendar,
        asset_class=target.asset_class,
        policy=policy_for(settings),
        history=None,
        waived=waived,
        docs=docs_dir(settings),
        splits=splits,
        run=f"validate {target.batch_id}",
    )
    with engine.begin() as conn:
        quarantined = record_screen(
            conn,
            screened,
            symbol=target.symbol,
            timeframe=target.timeframe,
            source="store",
            batch_id=target.batch_id,
            trigger="validate",
        )
        delete_bars(
            conn, target.symbol, target.timeframe, [r.ts for r in screened.rejected if r.ts is not None]
        )
    gaps = screened.report.gaps
    return ValidateOutcome(
        symbol=target.symbol,
        timeframe=target.timeframe,
        rows_checked=screened.report.rows_checked,
        quarantined=quarantined,
        warned=len(screened.report.warnings),
        quarantine_reasons=quarantine_reasons(screened.rejected),
        missing_bars=gaps.missing,
        gap_count=len(gaps.gaps),
        longest_gap=longest_gap_text(gaps),
        docs_path=str(screened.report.docs_path or ""),
    )
