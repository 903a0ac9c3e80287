"""The ``assets`` table: the asset registry, synced from ``config/assets.yaml`` and extended at run time.

Rows go in and come out as :class:`config.assets.AssetSpec`. Symbols are matched the way
``AssetSpec`` writes them: stripped and upper-case.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, insert, select, update

from config.assets import AssetSpec
from storage._time import now_ms as _now_ms
from storage.schema import AssetRow

_SPEC_FIELDS: tuple[str, ...] = (
    "symbol",
    "asset_class",
    "calendar",
    "timeframe",
    "enabled",
    "default_source",
    "source_options",
    "provider_symbols",
    "description",
)


def _values(spec: AssetSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    return {name: data[name] for name in _SPEC_FIELDS}


def _spec(row: Any) -> AssetSpec:
    return AssetSpec.model_validate({name: getattr(row, name) for name in _SPEC_FIELDS})


def _check_spec(spec: object) -> AssetSpec:
    if not isinstance(spec, AssetSpec):
        raise TypeError(f"expected a config.assets.AssetSpec, got {type(spec).__name__}")
    return spec


def upsert_assets(conn: Connection, specs: Iterable[AssetSpec]) -> None:
    """Make the ``assets`` table agree with ``specs`` (the YAML registry wins).

    New symbols are inserted; stored symbols whose fields differ are overwritten and get a new
    ``updated_at``; identical ones are not touched. Symbols absent from ``specs`` are kept. Runs
    on the caller's connection and transaction.

    Raises:
        TypeError: when an entry is not an ``AssetSpec``.
        ValueError: when ``specs`` lists the same symbol twice.
    """
    wanted: dict[str, AssetSpec] = {}
    for spec in specs:
        spec = _check_spec(spec)
        if spec.symbol in wanted:
            raise ValueError(f"asset {spec.symbol} is listed twice; keep one entry per symbol")
        wanted[spec.symbol] = spec
    if not wanted:
        return
    stored = {
        row.symbol: row
        for row in conn.execute(select(AssetRow.__table__).where(AssetRow.symbol.in_(list(wanted)))).all()
    }
    now = _now_ms()
    new_rows = [
        {**_values(spec), "created_at": now, "updated_at": now}
        for symbol, spec in wanted.items()
        if symbol not in stored
    ]
    if new_rows:
        conn.execute(_insert_missing(conn), new_rows)
    for symbol, spec in wanted.items():
        row = stored.get(symbol)
        if row is not None and _spec(row) != spec:
            conn.execute(
                update(AssetRow).where(AssetRow.symbol == symbol).values(**_values(spec), updated_at=now)
            )


def _insert_missing(conn: Connection) -> Any:
    """An ``INSERT`` into ``assets`` that skips a symbol stored meanwhile (``ON CONFLICT DO
    NOTHING``), so processes registering the same symbol at once never collide."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(AssetRow).on_conflict_do_nothing(index_elements=["symbol"])
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(AssetRow).on_conflict_do_nothing(index_elements=["symbol"])
    return insert(AssetRow)


def register_asset(conn: Connection, spec: AssetSpec) -> None:
    """Add one new asset to the registry; registering the same asset again (the same fields, e.g.
    by another process at the same time) changes nothing.

    Raises:
        TypeError: when ``spec`` is not an ``AssetSpec``.
        ValueError: when the symbol is registered with other fields (use :func:`upsert_assets`
            to change it).
    """
    spec = _check_spec(spec)
    now = _now_ms()
    done = conn.execute(_insert_missing(conn).values(**_values(spec), created_at=now, updated_at=now))
    if done.rowcount == 1:
        return
    stored = get_asset(conn, spec.symbol)
    if stored is not None and stored == spec:
        return  # another process registered the very same asset meanwhile
    raise ValueError(
        f"asset {spec.symbol} is already registered with other fields; "
        "edit config/assets.yaml (or pass the stored --asset-class/--calendar) to change it"
    )


def get_asset(conn: Connection, symbol: str) -> AssetSpec | None:
    """The registered asset ``symbol`` (case-insensitive), or None when it is not registered."""
    key = symbol.strip().upper()
    row = conn.execute(select(AssetRow.__table__).where(AssetRow.symbol == key)).first()
    return None if row is None else _spec(row)


def list_assets(conn: Connection, enabled_only: bool = False) -> list[AssetSpec]:
    """All registered assets sorted by symbol; with ``enabled_only`` only those enabled."""
    query = select(AssetRow.__table__).order_by(AssetRow.symbol)
    if enabled_only:
        query = query.where(AssetRow.enabled.is_(True))
    return [_spec(row) for row in conn.execute(query).all()]
