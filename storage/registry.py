"""The asset registry file synchronised into the ``assets`` table (the YAML file wins)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from config.assets import AssetSpec
from storage.assets import list_assets, upsert_assets


def sync_asset_registry(conn: Connection, specs: Iterable[AssetSpec]) -> dict[str, AssetSpec]:
    """Make the ``assets`` table agree with ``specs`` (read with
    :func:`config.assets.load_asset_specs`) and return every registered asset by symbol, enabled
    or not. Runs on the caller's connection and transaction.

    Raises:
        ValueError: when ``specs`` lists a symbol twice.
    """
    upsert_assets(conn, specs)
    return {a.symbol: a for a in list_assets(conn)}
