"""The one way to get a :class:`~providers.manager.ProviderManager`: :func:`open_manager` builds
one (the caller closes it), :func:`shared_manager` shares one per process, configuration and scope.

The series that an orchestrator maps onto threads of one process share a manager, hence each
provider's token bucket, breaker and response cache. A ``scope`` (e.g. a backfill run's batch
id) gets managers of its own, which :func:`close_managers` closes when the scope ends::

    manager = shared_manager(settings, open_store(settings.db_url))
    result = manager.fetch(asset, "1d", start, end)

API keys held in an orchestrator's secret store are passed as ``api_keys`` (the task layer reads
Prefect Secret blocks, :func:`tasks.providers.api_keys_for`); keys set in the settings
(``FKS_<PROVIDER>_API_KEY``) need nothing more.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import SecretStr
from sqlalchemy import Engine

from config.settings import Settings

if TYPE_CHECKING:
    from providers.manager import ProviderManager

_lock = threading.Lock()
_managers: dict[tuple[str, int, str], ProviderManager] = {}


def _fingerprint(settings: Settings, keys: Mapping[str, SecretStr]) -> str:
    digest = hashlib.sha256(settings.model_dump_json().encode())
    for name in sorted(keys):
        digest.update(f"{name}={keys[name].get_secret_value()}".encode())
    for name in type(settings).model_fields:
        if name.endswith("_api_key"):
            value = getattr(settings, name)
            digest.update(f"{name}={value.get_secret_value() if value else ''}".encode())
    return digest.hexdigest()


def open_manager(
    settings: Settings, engine: Engine, *, api_keys: Mapping[str, SecretStr] | None = None
) -> ProviderManager:
    """A new provider manager of ``settings`` on ``engine`` with ``api_keys`` (provider name ->
    key, overriding the settings' keys); close it when done (it is a context manager).

    Raises:
        ValueError: when the providers file (``settings.providers_file``) is missing or invalid.
    """
    from providers.manager import ProviderManager

    return ProviderManager(settings, engine, api_keys=dict(api_keys or {}))


def shared_manager(
    settings: Settings,
    engine: Engine,
    *,
    api_keys: Mapping[str, SecretStr] | None = None,
    scope: str = "",
) -> ProviderManager:
    """The provider manager of ``settings`` on ``engine`` with ``api_keys`` (provider name ->
    key, overriding the settings' keys), one per process, configuration, engine and ``scope``
    (empty: the process-wide one, never closed; otherwise closed by :func:`close_managers`).

    Raises:
        ValueError: when the providers file (``settings.providers_file``) is missing or invalid.
    """
    keys = dict(api_keys or {})
    key = (_fingerprint(settings, keys), id(engine), scope)
    with _lock:
        manager = _managers.get(key)
        if manager is None:
            manager = open_manager(settings, engine, api_keys=keys)
            _managers[key] = manager
        return manager


def close_managers(scope: str) -> None:
    """Close and forget every manager of ``scope`` (the next :func:`shared_manager` of that scope
    builds a new one). The process-wide managers (empty scope) are left alone."""
    if not scope:
        return
    with _lock:
        closing = [k for k in _managers if k[2] == scope]
        managers = [_managers.pop(k) for k in closing]
    for manager in managers:
        manager.close()
