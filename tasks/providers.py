"""The provider manager that tasks share, and API keys from Prefect Secret blocks.

One :class:`providers.manager.ProviderManager` per process and configuration, so that the series
that Prefect maps onto threads share each provider's token bucket, breaker and cache.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from config.flows import InputError, Source
from config.settings import Settings
from providers.base import RateLimited, Unavailable
from tasks.store import store_for

if TYPE_CHECKING:
    from providers.manager import ProviderManager

ONLINE_SOURCES: frozenset[str] = frozenset(s.value for s in Source if s.online)

_lock = threading.Lock()
_managers: dict[str, ProviderManager] = {}


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry a task that failed with ``Unavailable`` or ``RateLimited``."""
    try:
        state.result()
    except (Unavailable, RateLimited):
        return True
    except Exception:
        return False
    return False


def api_keys_for(settings: Settings) -> dict[str, SecretStr]:
    """API keys named in ``settings.api_key_blocks`` read from their Prefect Secret blocks.

    A key set directly (``FKS_<PROVIDER>_API_KEY``) wins and its block is not read.

    Raises:
        InputError: when a named block does not exist; the message says how to create it.
    """
    from prefect.blocks.system import Secret

    keys: dict[str, SecretStr] = {}
    for provider, block in settings.api_key_blocks.items():
        if settings.provider_api_key(provider) is not None:
            continue
        try:
            secret = Secret.load(block)
        except ValueError:
            raise InputError(
                f"Prefect Secret block {block!r} (the API key of {provider}) does not exist; create it with "
                f"`Secret(value=...).save({block!r})` or set FKS_{provider.upper()}_API_KEY"
            ) from None
        keys[provider] = SecretStr(str(secret.get()))
    return keys


def _fingerprint(settings: Settings, keys: dict[str, SecretStr]) -> str:
    digest = hashlib.sha256(settings.model_dump_json().encode())
    for name in sorted(keys):
        digest.update(f"{name}={keys[name].get_secret_value()}".encode())
    for name in type(settings).model_fields:
        if name.endswith("_api_key"):
            value = getattr(settings, name)
            digest.update(f"{name}={value.get_secret_value() if value else ''}".encode())
    return digest.hexdigest()


def manager_for(settings: Settings) -> ProviderManager:
    """The provider manager of ``settings`` (one per process and configuration)."""
    from providers.manager import ProviderManager

    keys = api_keys_for(settings)
    key = _fingerprint(settings, keys)
    with _lock:
        manager = _managers.get(key)
        if manager is None:
            manager = ProviderManager(settings, store_for(settings), api_keys=keys)
            _managers[key] = manager
        return manager
