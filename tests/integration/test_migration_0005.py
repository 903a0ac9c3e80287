"""Migration 0005 (online providers) on a store that already holds assets and bars."""

from __future__ import annotations

from sqlalchemy import inspect

from config.assets import AssetSpec
from storage import get_asset, make_engine, migrate, register_asset
from tests.migration_support import migrate_to

NEW_TABLES = {
    "provider_usage",
    "provider_state",
    "provider_discrepancies",
    "bar_verifications",
    "backfill_chunks",
    "companies",
    "company_filings",
    "company_facts",
}


def test_0005_keeps_existing_assets_and_round_trips(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate_to(eng, "0004")
        with eng.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO assets (symbol, asset_class, calendar, timeframe, enabled, default_source, "
                "source_options, description, created_at, updated_at) VALUES "
                "('OLD', 'equity', 'XNYS', '1d', true, 'csv', '{\"path\": \"old.csv\"}', 'before 0005', 1, 1)"
            )
        migrate(eng)
        assert set(inspect(eng).get_table_names()) >= NEW_TABLES
        with eng.begin() as conn:
            old = get_asset(conn, "OLD")
            assert (
                old is not None and old.provider_symbols == {} and old.source_options == {"path": "old.csv"}
            )
            register_asset(
                conn, AssetSpec(symbol="NEW", asset_class="crypto", provider_symbols={"binance": "NEWUSDT"})
            )
        with eng.connect() as conn:
            assert get_asset(conn, "NEW").symbol_at("binance") == "NEWUSDT"  # type: ignore[union-attr]
        migrate_to(eng, "0004", up=False)
        assert not NEW_TABLES & set(inspect(eng).get_table_names())
        with eng.connect() as conn:
            rows = conn.exec_driver_sql("SELECT symbol, description FROM assets ORDER BY symbol").all()
        assert [tuple(r) for r in rows] == [("NEW", ""), ("OLD", "before 0005")]
        migrate(eng)
        with eng.connect() as conn:
            assert get_asset(conn, "OLD").provider_symbols == {}  # type: ignore[union-attr]
    finally:
        eng.dispose()
