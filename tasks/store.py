"""The store engine that tasks share: one migrated engine per database URL and process."""

from __future__ import annotations

import threading
from functools import lru_cache

from sqlalchemy import Engine

from config.settings import Settings
from storage import open_store


@lru_cache(maxsize=8)
def _store(db_url: str) -> Engine:
    return open_store(db_url)


_lock = threading.Lock()


def store_for(settings: Settings) -> Engine:
    """The migrated engine of ``settings.db_url`` (one per URL and process; threads that ask for a
    new database at once wait for one migration instead of racing)."""
    if settings.db_url.startswith("sqlite:///"):
        settings.ensure_data_dir()
    with _lock:
        return _store(settings.db_url)
