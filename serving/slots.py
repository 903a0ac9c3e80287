"""Model slots: one registered model alias held loaded, warmed, and swapped when the alias moves.

A :class:`ModelSlot` resolves ``name@alias`` in the MLflow registry (trying the aliases in order,
e.g. ``champion`` then ``challenger``), loads that version's pyfunc, warms it on its own input
example, and only then publishes it behind one reference. :meth:`ModelSlot.refresh` repeats the
lookup: when the alias points at another version, the new one is loaded and warmed while requests
keep using the old object, then swapped in one assignment. In-flight requests keep the object
they started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One loaded, warmed model version."""

    name: str
    alias: str
    version: str
    run_id: str
    model: Any
    tags: dict[str, str]
    loaded_at: pd.Timestamp
    load_seconds: float
    registered_at: pd.Timestamp | None = None
    """When the version was registered (the registry's creation time)."""

    @property
    def python_model(self) -> Any:
        """The pyfunc's own Python model (``ForecasterModel`` for the forecaster)."""
        return self.model.unwrap_python_model()


Loader = Callable[[str], Any]


def _registered(version: Any) -> pd.Timestamp | None:
    ms = getattr(version, "creation_timestamp", None)
    return None if ms is None else pd.Timestamp(int(ms), unit="ms", tz="UTC")


def _load_pyfunc(uri: str) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)


@dataclass
class ModelSlot:
    """The loaded version of ``name`` under the first of ``aliases`` that exists.

    Args:
        name: registered model name.
        aliases: aliases to try, in order (``("champion", "challenger")``: the champion, or the
            challenger with a warning while no champion exists).
        loader: ``models:/...`` URI -> pyfunc (default ``mlflow.pyfunc.load_model``).
        optional: the slot may be empty: no alias is not an error, and when the alias is
            removed the loaded version is let go (a challenger slot).
    """

    name: str
    aliases: Sequence[str]
    loader: Loader = _load_pyfunc
    optional: bool = False
    swaps: int = 0
    checked: bool = False
    """True once the registry was asked at least once (an empty optional slot then means: no
    such version, rather than: still loading)."""
    _current: LoadedModel | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def current(self) -> LoadedModel | None:
        """The version serving now (None until the first load)."""
        return self._current

    @property
    def label(self) -> str:
        """``name@alias`` of the first alias (what a client asks for)."""
        return f"{self.name}@{self.aliases[0]}"

    def _resolve(self) -> tuple[str, Any] | None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        for alias in self.aliases:
            try:
                return alias, client.get_model_version_by_alias(self.name, alias)
            except MlflowException:
                continue
        return None

    def refresh(self) -> bool:
        """Load the version the alias points at now, if it is not the one serving.

        Returns:
            True when a new version was loaded and swapped in.

        Raises:
            LookupError: no alias of ``aliases`` exists for ``name`` and nothing is loaded yet
                (never for an ``optional`` slot).
        """
        with self._lock:  # one load at a time per slot; readers never take this lock
            found = self._resolve()
            if found is None:
                self.checked = True
                if self.optional:
                    self._current = None
                    return False
                if self._current is None:
                    raise LookupError(
                        f"no version of {self.name!r} has alias {' or '.join(self.aliases)}; "
                        "train and register one (`fks train forecaster`, `fks promote`)"
                    )
                return False
            alias, version = found
            current = self._current
            if current is not None and current.version == str(version.version) and current.alias == alias:
                return False
            if alias != self.aliases[0]:
                wanted = self.aliases[0]
                log.warning("%s has no @%s: serving @%s (v%s)", self.name, wanted, alias, version.version)
            started = time.perf_counter()
            model = self.loader(f"models:/{self.name}/{version.version}")
            _warm(model)
            loaded = LoadedModel(
                name=self.name,
                alias=alias,
                version=str(version.version),
                run_id=str(version.run_id),
                model=model,
                tags=dict(version.tags or {}),
                loaded_at=pd.Timestamp.now(tz="UTC"),
                load_seconds=time.perf_counter() - started,
                registered_at=_registered(version),
            )
            self._current = loaded  # one assignment: requests see the old or the new object
            self.checked = True
            if current is not None:
                self.swaps += 1
            return True


def _warm(model: Any) -> None:
    """Run the model once on its own input example, and a forecaster's compiled forward pass
    too (the REST service's path), so the first request pays no compilation."""
    example = getattr(model, "input_example", None)
    if example is None:
        return
    model.predict(example)
    inner = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else None
    if inner is not None and hasattr(inner, "prepare") and hasattr(inner, "forward"):
        inner.forward(inner.prepare(example).x)
