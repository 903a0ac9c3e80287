"""The desk's :class:`~execution.desk.Advisor` over HTTP: the REST service answers, never a model
loaded in this process (the served model is what trades)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from execution.client import ServiceClient, ServiceError
from execution.desk import Advice

__all__ = ["ServiceAdvisor"]


class ServiceAdvisor:
    """Asks ``POST /v1/forecast`` (``model``) or, when ``allocator`` is set, ``POST /v1/allocate``
    for the desk's decisions, through ``client`` (``FKS_SERVICE_URL``, ``FKS_SERVICE_API_KEY``).

    ``history`` (bars sent per symbol) is the served version's ``min_bars`` from ``GET
    /v1/models``, read when the advisor is built and again whenever the answering version changes.

    Raises:
        ServiceError: the service cannot be reached, refuses the key, or does not serve the model
            (the message says how to fix it).
    """

    def __init__(
        self, client: ServiceClient, model: str = "fks-forecaster", allocator: str | None = None
    ) -> None:
        self._client = client
        self._name = allocator or model
        self._allocator = allocator is not None
        self._info: dict[str, Any] = {}
        self._refresh()

    def _refresh(self) -> None:
        models = self._client.models()
        served = [m for m in models if m.get("name") == self._name]
        if not served:
            names = sorted({str(m.get("name")) for m in models}) or ["none"]
            raise ServiceError(
                404,
                f"the service does not serve {self._name!r} (it serves: {', '.join(names)})",
                "register and promote the model, or restart `fks serve` with it in FKS_SERVE_MODELS",
                "GET /v1/models",
            )
        champion = [m for m in served if m.get("alias") == "champion"]
        self._info = (champion or served)[0]

    @property
    def history(self) -> int:
        """Bars to send per symbol: the served version's ``min_bars``."""
        return int(self._info.get("min_bars") or 1)

    def registered_at(self, model: str, version: str) -> pd.Timestamp | None:
        """When the served version was registered, as the service reports it."""
        if model != self._info.get("name") or str(version) != str(self._info.get("version")):
            self._refresh()
        if str(version) != str(self._info.get("version")) or not self._info.get("registered_at"):
            return None
        return pd.Timestamp(self._info["registered_at"]).tz_convert("UTC")

    def advise(self, bars: Mapping[str, pd.DataFrame], weights: Mapping[str, float]) -> list[Advice]:
        """The served answers for every symbol of ``bars``."""
        if self._allocator:
            allocation = self._client.allocate(bars, weights, model=self._name)
            self._follow(allocation.version)
            return [
                Advice(s, allocation.model, allocation.version, weight=allocation.weights.get(s, 0.0))
                for s in bars
            ]
        answer = self._client.forecast(bars, model=self._name)
        self._follow(answer.version)
        return [
            Advice(s, answer.model, answer.version, forecast=f.forecast_log_return, prob_up=f.prob_up)
            for s, f in ((s, answer[s]) for s in bars)
        ]

    def _follow(self, version: str) -> None:
        if str(version) != str(self._info.get("version")):
            self._refresh()
