"""What one running service holds: settings, model slots, batchers, caches, metrics, the writer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from config.settings import Settings
from serving.auth import KeyGate
from serving.batching import MicroBatcher
from serving.cache import LRUCache
from serving.recorder import PredictionWriter
from serving.slots import LoadedModel, ModelSlot

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RETIRE_AFTER_S = 30.0
"""A swapped-out version's batcher and caches are dropped this long after their last use."""


class Problem(Exception):
    """An answer other than 200: HTTP status, a message a person can act on, optional detail."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "fks_requests", "Requests by route and status.", ["route", "status"], registry=reg
        )
        self.latency = Histogram(
            "fks_request_seconds", "Request latency.", ["route"], buckets=_LATENCY_BUCKETS, registry=reg
        )
        self.version = Gauge(
            "fks_model_version", "Loaded version per model.", ["model", "alias"], registry=reg
        )
        self.swaps = Counter("fks_model_swaps", "Model versions swapped in.", ["model"], registry=reg)
        self.batch = Histogram(
            "fks_batch_size", "Windows per forward pass.", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=reg
        )
        self.predictions = Counter(
            "fks_predictions", "Series scored, by model, alias and shadow.", ["model", "alias", "shadow"],
            registry=reg,
        )  # fmt: skip
        self.dropped = Counter(
            "fks_predictions_dropped", "Prediction rows dropped because the writer's queue was full.",
            registry=reg,
        )  # fmt: skip
        self.cache = Gauge(
            "fks_feature_cache", "Feature cache lookups by result, summed over loaded versions.", ["result"],
            registry=reg,
        )  # fmt: skip


class ServiceState:
    """The app's state (``app.state.fks``).

    ``slots`` answer by default (``name@champion``, else ``@challenger``); ``challengers`` hold
    each model's ``@challenger`` for the traffic share and shadow mode.
    """

    def __init__(self, settings: Settings, slots: Sequence[ModelSlot]) -> None:
        self.settings = settings
        self.slots = {slot.name: slot for slot in slots}
        self.challengers = {
            name: ModelSlot(name=name, aliases=("challenger",), loader=self._reusing(slot), optional=True)
            for name, slot in self.slots.items()
            if "challenger" not in slot.aliases[:1]
        }
        self.metrics = Metrics()
        self._engine: Any = None
        self.gate = KeyGate(self.engine, rate_per_minute=settings.serve_rate_per_minute)
        self.writer = PredictionWriter(
            self.engine, capacity=settings.serve_prediction_queue, on_drop=self.metrics.dropped.inc
        )
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._caches: dict[tuple[str, str], LRUCache] = {}
        self._used: dict[tuple[str, str], float] = {}
        self.extras: dict[tuple[str, str, str], Any] = {}
        """Per-version values computed once (explain backgrounds): ``(name, version, what)``."""
        self.explaining = asyncio.Lock()
        """One explanation at a time: each costs a few hundred forward and backward passes."""
        self.background: set[asyncio.Task[None]] = set()
        """Shadow scorings in flight (held so they are not garbage-collected)."""

    @staticmethod
    def _reusing(slot: ModelSlot) -> Any:
        """A loader for ``slot``'s challenger that takes the already loaded object when the
        challenger is the version ``slot`` serves (no champion yet): one copy in memory."""

        def load(uri: str) -> Any:
            current = slot.current
            if current is not None and uri == f"models:/{current.name}/{current.version}":
                return current.model
            return slot.loader(uri)

        return load

    def engine(self) -> Any:
        if self._engine is None:
            from storage import open_store

            self._engine = open_store(self.settings.db_url)
        return self._engine

    def loaded(self, name: str) -> LoadedModel:
        """The version answering for ``name`` by default.

        Raises:
            Problem: 404 for a model not served, 503 while it loads.
        """
        slot = self.slots.get(name)
        if slot is None:
            served = ", ".join(self.slots) or "none"
            raise Problem(404, f"no model {name!r} is served; served models: {served}")
        current = slot.current
        if current is None and slot.optional and slot.checked:
            wanted = slot.aliases[0]
            raise Problem(404, f"no version of {name!r} has alias @{wanted}; register and promote one")
        if current is None:
            raise Problem(503, f"model {name!r} is not loaded yet; retry when GET /ready answers 200")
        return current

    def forecaster(self, name: str) -> LoadedModel:
        """:meth:`loaded`, for routes that need FKS's forecaster interface (bars to windows).

        Raises:
            Problem: as :meth:`loaded`, and 422 for a model of another kind (it answers on
                ``/invocations``).
        """
        loaded = self.loaded(name)
        if not hasattr(loaded.python_model, "prepare"):
            raise Problem(
                422, f"model {name!r} is not a forecaster; send its inputs to POST /invocations?model={name}"
            )
        return loaded

    def challenger(self, name: str) -> LoadedModel | None:
        """``name``'s loaded ``@challenger`` when it is another version than the default one."""
        slot = self.challengers.get(name)
        current = self.slots[name].current if name in self.slots else None
        other = slot.current if slot is not None else None
        if other is None or current is None or other.version == current.version:
            return None
        return other

    def batcher(self, loaded: LoadedModel) -> MicroBatcher:
        """The micro-batcher of ``loaded``'s forward pass (one per version)."""
        key = (loaded.name, loaded.version)
        self._used[key] = time.monotonic()
        batcher = self._batchers.get(key)
        if batcher is None:
            inner = loaded.python_model
            batcher = MicroBatcher(
                lambda x: list(inner.forward(x)),
                max_batch_size=self.settings.serve_max_batch_size,
                max_wait_ms=self.settings.serve_max_wait_ms,
                on_batch=self.metrics.batch.observe,
            )
            self._batchers[key] = batcher
        return batcher

    def cache(self, loaded: LoadedModel) -> LRUCache | None:
        """``loaded``'s feature cache (None when ``serve_feature_cache`` is 0)."""
        if self.settings.serve_feature_cache <= 0:
            return None
        key = (loaded.name, loaded.version)
        self._used[key] = time.monotonic()
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = LRUCache(self.settings.serve_feature_cache)
        return cache

    def cache_counts(self) -> tuple[int, int]:
        """Feature cache hits and misses over every cache held."""
        caches = list(self._caches.values())
        return sum(c.hits for c in caches), sum(c.misses for c in caches)

    def retire(self) -> list[MicroBatcher]:
        """Forget batchers, caches and extras of versions no slot serves and nobody used for
        :data:`RETIRE_AFTER_S`; returns the batchers to close."""
        live = {
            (s.current.name, s.current.version)
            for s in (*self.slots.values(), *self.challengers.values())
            if s.current is not None
        }
        now = time.monotonic()
        stale = [k for k, at in self._used.items() if k not in live and now - at > RETIRE_AFTER_S]
        closing = []
        for key in stale:
            self._used.pop(key, None)
            self._caches.pop(key, None)
            batcher = self._batchers.pop(key, None)
            if batcher is not None:
                closing.append(batcher)
            for extra in [e for e in self.extras if e[:2] == key]:
                self.extras.pop(extra, None)
        return closing

    async def close(self) -> None:
        """Finish shadow scorings, close every batcher and write what the writer holds."""
        if self.background:
            await asyncio.wait(list(self.background), timeout=10)
        for batcher in list(self._batchers.values()):
            await batcher.close()
        self._batchers.clear()
        self.writer.close()
        if self._engine is not None:
            self._engine.dispose()
