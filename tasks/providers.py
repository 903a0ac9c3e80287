"""What Prefect adds to the provider manager: API keys from Prefect Secret blocks, the retry
condition of fetching tasks, and the manager factory that tasks share.

The manager itself comes from :func:`providers.shared.shared_manager` (one per process,
configuration and scope), so the series that Prefect maps onto threads share each provider's
token bucket, breaker and cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from pydantic import SecretStr

from config.flows import InputError
from config.settings import Settings
from providers.base import RateLimited, Unavailable
from providers.shared import close_managers, shared_manager
from tasks.store import store_for

if TYPE_CHECKING:
    from providers.manager import ProviderManager


def is_transient(task: Task[..., object], task_run: TaskRun, state: State[object]) -> bool:
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
            secret = cast("Secret[Any]", Secret.load(block))  # sync here: the block, not a coroutine
        except ValueError:
            raise InputError(
                f"Prefect Secret block {block!r} (the API key of {provider}) does not exist; set "
                f"FKS_{provider.upper()}_API_KEY, or create the block in the Prefect UI (Blocks, Secret, "
                f"name {block!r}; `fks server start` serves the UI) or in Python with "
                f"`Secret(value=...).save({block!r})`"
            ) from None
        keys[provider] = SecretStr(str(secret.get()))
    return keys


def manager_for(settings: Settings, scope: str = "") -> ProviderManager:
    """The provider manager of ``settings`` on :func:`tasks.store.store_for`'s engine, with the keys
    of its Prefect Secret blocks: one per process, configuration and ``scope`` (empty: shared by
    the process; a run's id: the run's own, closed by :func:`release_managers`)."""
    return shared_manager(settings, store_for(settings), api_keys=api_keys_for(settings), scope=scope)


def release_managers(scope: str) -> None:
    """Close the provider managers of ``scope`` (a run that is over)."""
    close_managers(scope)
