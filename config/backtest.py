"""Configs of the backtest and promotion flows.

The model is named in one place per config: :class:`BacktestConfig` ``model`` (``name@alias`` or
``name/version``), :class:`PromoteConfig` ``model`` (a registered name). How it is backtested
(strategy, threshold, costs, walk-forward blocks, history) is an :class:`EvaluationConfig`, which
names no model. Both configs name the model's ``family`` (default ``forecaster``); the default
model is that family's registered name (:func:`config.models.family_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.costs import CostsConfig
from config.models import DEFAULT_FAMILY, FAMILY_CONFIGS, FamilyNames, family_config
from config.promotion import BUY_AND_HOLD, DEFAULT_BASELINES, PromotionPolicy

STRATEGIES: tuple[str, ...] = ("long_flat", "long_short")
"""The ways a model's output becomes positions (see :class:`EvaluationConfig`)."""


class EvaluationConfig(BaseModel):
    """How a model is backtested out of sample, net of costs (it names no model).

    The model's output becomes positions by its family's rule; for the forecaster ``long_flat``
    holds 1 when the forecast exceeds ``threshold`` (log return), else 0, and ``long_short``
    holds the forecast's sign. Positions are decided at a bar's close and filled at the next
    bar's open. ``windows`` splits the out-of-sample window into consecutive walk-forward blocks
    reported one by one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Literal["long_flat", "long_short"] = "long_flat"
    threshold: float = 0.0
    costs: CostsConfig = Field(default_factory=CostsConfig)
    windows: int = Field(default=3, ge=1, le=24)
    history: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Raw bars sent with each forecast request; default the model's min_bars (the least it "
            "accepts). Any number at or beyond min_bars gives the same forecast."
        ),
    )


def _known_family(value: str) -> str:
    family_config(value)  # raises ValueError naming the known families
    return value


def _family_defaults(data: Any, defaults: Callable[[type[FamilyNames]], dict[str, Any]]) -> Any:
    """Raw input with the named family's defaults filled in where the input gives none."""
    if isinstance(data, Mapping) and isinstance(data.get("family"), str) and data["family"] in FAMILY_CONFIGS:
        return {**defaults(FAMILY_CONFIGS[data["family"]]), **data}
    return data


class BacktestConfig(EvaluationConfig):
    """Evaluate a registered model version on its out-of-sample window, net of costs.

    ``model`` is ``name@alias`` or ``name/version``; default the ``family``'s registered model
    ``@challenger`` (``fks-forecaster@challenger``). The rest is :class:`EvaluationConfig`.
    """

    family: str = DEFAULT_FAMILY
    model: str = f"{family_config(DEFAULT_FAMILY).registered_name}@challenger"

    _family = field_validator("family")(_known_family)

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_family(cls, data: Any) -> Any:
        return _family_defaults(data, lambda names: {"model": f"{names.registered_name}@challenger"})


class PromoteConfig(BaseModel):
    """The promotion gate: ``model``'s challenger against its champion and the baselines.

    ``model`` is the registered name (default the ``family``'s, ``fks-forecaster``); it is the
    only place the gate's model is named. Both versions are backtested the way ``backtest`` says
    (an :class:`EvaluationConfig`: strategy, costs, windows, history) on the challenger's
    out-of-sample window, narrowed to the part that is out of sample for the champion too (see
    :func:`models.gate.comparison_window`); ``policy`` sets the primary metric, margins, guards
    and the fewest bars that window may hold. ``force`` promotes regardless and records that.

    ``baselines`` are the baselines the challenger must beat (the best of them on the primary
    metric counts): ``"buy and hold"`` (always long; ``buy_and_hold`` is accepted too) and names
    of the family's baselines (for the forecaster ``last_return``, ``ridge``, ``hist_gb``,
    ``zero``, ``always_long``), whose test forecasts logged by the challenger's training run
    (``predictions/test_predictions.csv``) are traded like the model's. A listed baseline that
    cannot be evaluated (no logged predictions, no such column, no forecast in the window) fails
    the gate's baseline check with the reason; it is never skipped silently. Default: buy and
    hold and the family config's ``baselines`` (:data:`config.promotion.DEFAULT_BASELINES` for
    the forecaster). ``include_buy_and_hold=False`` (kept for older configs) drops buy and hold
    from the list.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str = DEFAULT_FAMILY
    model: str = family_config(DEFAULT_FAMILY).registered_name
    backtest: EvaluationConfig = Field(default_factory=EvaluationConfig)
    policy: PromotionPolicy = Field(default_factory=PromotionPolicy)
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    include_buy_and_hold: bool = True
    force: bool = False
    actor: str = "fks"

    _family = field_validator("family")(_known_family)

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_family(cls, data: Any) -> Any:
        return _family_defaults(
            data,
            lambda names: {"model": names.registered_name, "baselines": (BUY_AND_HOLD, *names.baselines)},
        )

    @field_validator("backtest", mode="before")
    @classmethod
    def _backtest_names_no_model(cls, value: object) -> object:
        if isinstance(value, BacktestConfig) or (
            isinstance(value, Mapping) and ("model" in value or "family" in value)
        ):
            raise ValueError(
                "backtest says how the gate backtests (strategy, threshold, costs, windows, history), "
                "not which model: the gate judges the challenger and champion of PromoteConfig.model; "
                "drop backtest.model (and backtest.family)"
            )
        return value

    @field_validator("baselines", mode="before")
    @classmethod
    def _baseline_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list | tuple):
            return value  # pydantic reports the type error
        names: list[str] = []
        for raw in value:
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError(
                    f"baselines must be non-empty names, got {raw!r}; e.g. {list(DEFAULT_BASELINES)}"
                )
            name = " ".join(raw.strip().lower().replace("-", " ").split())
            name = BUY_AND_HOLD if name in (BUY_AND_HOLD, "buy_and_hold") else name.replace(" ", "_")
            if name in names:
                raise ValueError(f"baseline {name!r} is listed twice in baselines; list each once")
            names.append(name)
        if not names:
            raise ValueError(f"baselines must list at least one baseline, e.g. {list(DEFAULT_BASELINES)}")
        return tuple(names)

    @model_validator(mode="after")
    def _something_to_beat(self) -> PromoteConfig:
        if not self.gate_baselines:
            raise ValueError(
                "include_buy_and_hold=False leaves no baseline to beat; "
                "list at least one other baseline in baselines, e.g. ['ridge']"
            )
        return self

    @property
    def gate_baselines(self) -> tuple[str, ...]:
        """The baselines the gate compares against: ``baselines`` less buy and hold when
        ``include_buy_and_hold`` is False."""
        if self.include_buy_and_hold:
            return self.baselines
        return tuple(name for name in self.baselines if name != BUY_AND_HOLD)
