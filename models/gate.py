"""The promotion gate: should a challenger replace the champion? Pure logic, no MLflow, no database.

::

    from config.promotion import PromotionPolicy
    from models.gate import GateInput, best_baseline, decide

    name, base = best_baseline({"buy_and_hold": bh, "sma_cross": sma}, "sharpe")
    inputs = GateInput(
        challenger=challenger_metrics, champion=champion_metrics,   # None when there is no champion
        baseline_name=name, baseline=base,
        window_start="2024-01-01", window_end="2024-06-30",
        data_validated=True, n_trades=42,
    )
    decision = decide(inputs, PromotionPolicy())
    decision.promote, decision.outcome     # True, "promoted"
    decision.reasons                       # ["Sharpe 0.61 beats champion 0.42 by 0.19 >= margin 0.05", ...]

The window comes first: :func:`comparison_window` takes the two versions' dates (anything with the
attributes of :class:`TrainedModel`, such as :class:`models.registry.ModelRef`) and the series'
bars, and returns the part of the challenger's test window that is out of sample for both, or
why the champion cannot be compared::

    window = comparison_window(challenger_ref, champion_ref, bars.index, PromotionPolicy())
    window.start, window.end, window.n_bars, window.narrowed
    window.problem      # None, or "Champion v1 is on GOOGL 1d, the challenger v2 on SPX 1d: ..."
    inputs = GateInput(..., champion_problem=window.problem, window_note=window.note)

The metrics dicts are out-of-sample backtest metrics over the same window (``sharpe``,
``max_drawdown``, ...). :func:`decide` runs every check of :class:`config.promotion.PromotionPolicy`
(champion, baseline, drawdown, trades, data) and promotes only when all pass. ``reasons`` are
sentences a person can read: the passed checks when it promotes, every failed check when it
refuses. A champion that cannot be compared (``champion_problem``) fails the champion check, and
a configured baseline that could not be evaluated (``baseline_problems``) fails the baseline
check, each with its reason. ``decide(..., force=True)`` promotes anyway and keeps the reasons it
would have refused for, marked ``forced``. Apply a decision to the registry with
:func:`models.registry.apply_decision` and record it with :func:`storage.record_promotion` (both
at once: :func:`models.promotion.apply_and_record`). The whole run, backtests included, is
:func:`backtest.promotion.run_gate`; it works on any model family (:mod:`models.family`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from config.promotion import CLOSER_TO_ZERO_IS_BETTER, DRAWDOWN_METRIC, PromotionPolicy
from market.bars import as_utc

__all__ = [
    "CHECKS",
    "ComparisonWindow",
    "Decision",
    "GateInput",
    "TrainedModel",
    "best_baseline",
    "comparison_window",
    "decide",
    "improvement",
]

CHECKS: tuple[str, ...] = ("champion", "baseline", "drawdown", "trades", "data")
"""The gate's checks, in the order :func:`decide` runs and reports them."""

_EPS = 1e-12  # float slack when comparing an improvement with its margin (0.47 - 0.42 vs 0.05)
_LABELS = {
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "calmar": "Calmar",
    "cagr": "CAGR",
    "max_drawdown": "Max drawdown",
    "total_return": "Total return",
    "win_rate": "Win rate",
}


def _finite(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    """``metrics[key]`` as a finite float, or None when absent, not a number, NaN or infinite."""
    if metrics is None or key not in metrics:
        return None
    value = metrics[key]
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _score(metric: str, value: float) -> float:
    """``value`` on a higher-is-better scale: drawdowns by closeness to 0."""
    return -abs(value) if metric in CLOSER_TO_ZERO_IS_BETTER else value


def improvement(metric: str, value: float, other: float) -> float:
    """How much better ``value`` is than ``other`` on ``metric`` (positive: better).

    ``value - other`` for higher-is-better metrics; for ``max_drawdown`` the gain in closeness to
    0, ``|other| - |value|`` (so -0.12 improves on -0.20 by 0.08).
    """
    return _score(metric, value) - _score(metric, other)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _label(metric: str) -> str:
    return _LABELS.get(metric, metric)


def best_baseline(
    baselines: Mapping[str, Mapping[str, Any]], metric: str = "sharpe"
) -> tuple[str, dict[str, Any]]:
    """The baseline that is best on ``metric`` (higher, or closer to 0 for ``max_drawdown``).

    Baselines whose ``metric`` is missing or not finite are not candidates.

    Returns:
        ``(name, its metrics)``.

    Raises:
        ValueError: no baselines, or none has a finite ``metric``.
    """
    if not baselines:
        raise ValueError("best_baseline needs at least one baseline's metrics")
    candidates = {name: v for name, m in baselines.items() if (v := _finite(m, metric)) is not None}
    if not candidates:
        raise ValueError(f"no baseline has a finite {metric!r}; baselines: {sorted(baselines)}")
    name = max(candidates, key=lambda b: _score(metric, candidates[b]))
    return name, dict(baselines[name])


class TrainedModel(Protocol):
    """What the gate needs to know about a registered version (:class:`models.registry.ModelRef`).

    ``test_start``/``test_end``: its out-of-sample window (first and last decision bar);
    ``val_end``: the last decision bar of its training and validation data, or None when the run
    did not log it; ``horizon``: bars ahead it forecasts.
    """

    @property
    def version(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def timeframe(self) -> str: ...
    @property
    def test_start(self) -> pd.Timestamp: ...
    @property
    def test_end(self) -> pd.Timestamp: ...
    @property
    def val_end(self) -> pd.Timestamp | None: ...
    @property
    def horizon(self) -> int: ...


@dataclass(frozen=True)
class ComparisonWindow:
    """The window the gate backtests on, and whether the champion can be compared on it.

    Attributes:
        start, end: first and last decision bar (UTC). The part of the challenger's test window
            that is out of sample for both models when the champion can be compared (or there is
            none); otherwise the challenger's own out-of-sample window, on which the other checks
            still run.
        n_bars: bars in ``[start, end]``.
        narrowed: the window is shorter than the challenger's test window.
        problem: why the champion cannot be compared (another symbol or timeframe, no or too
            few bars out of sample for both), or None. Give it to
            :attr:`GateInput.champion_problem`: the champion check then fails with it.
        note: when the window was narrowed, which part is used and why, else None (give it to
            :attr:`GateInput.window_note`).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    n_bars: int
    narrowed: bool
    problem: str | None
    note: str | None = None


def _day(ts: pd.Timestamp) -> str:
    """A timestamp as a date when it is midnight, else ISO minutes."""
    return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else f"{ts:%Y-%m-%d %H:%M}"


def _seen(model: TrainedModel, index: pd.DatetimeIndex) -> tuple[int, str]:
    """Position in ``index`` of ``model``'s first out-of-sample decision bar, and what it saw.

    The model saw the bars up to ``val_end`` and, through the label of its last validation
    sample, the ``horizon`` bars after it: a decision bar is out of sample for it from the
    ``horizon``-th bar after ``val_end`` on (its target then starts at a close the model never
    saw; for ``horizon`` 1 that is the next bar). Without ``val_end`` (older runs) everything
    before the model's own ``test_start`` counts as seen.
    """
    if model.val_end is None:
        start = as_utc(model.test_start, "test_start")
        seen = (
            f"its run logged no data.val_end, so every bar before its test window ({_day(start)}) "
            "counts as seen"
        )
        return int(index.searchsorted(start, side="left")), seen
    val_end = as_utc(model.val_end, "val_end")
    horizon = max(int(model.horizon), 1)
    first = int(index.searchsorted(val_end, side="right")) + horizon - 1
    seen = f"trained and validated up to {_day(val_end)}"
    if horizon > 1:
        seen += f", with labels {horizon} bars beyond"
    return first, seen


def comparison_window(
    challenger: TrainedModel,
    champion: TrainedModel | None,
    bars: pd.DatetimeIndex,
    policy: PromotionPolicy | None = None,
) -> ComparisonWindow:
    """The window on which challenger and champion are compared: out of sample for both.

    Rule: the challenger's test window, less any bar that is not out of sample for either model
    (see :func:`_seen`: a bar counts once it is after the model's training and validation data,
    ``val_end``, by its ``horizon``). When the champion's data reaches into the challenger's test
    window, the window is narrowed to the part after it. The champion cannot be compared, and
    ``problem`` says why, when it is on another symbol or timeframe, when no bar of the test
    window is out of sample for it, or when fewer than ``policy.min_window_bars`` are.

    Args:
        challenger: the challenger's dates (a :class:`models.registry.ModelRef`).
        champion: the champion's, or None when there is none (the window is then the
            challenger's own out-of-sample window).
        bars: the timestamps of the challenger's series (its bars' index), to count bars.
        policy: ``min_window_bars``; the defaults of :class:`PromotionPolicy` when None.

    Returns:
        The :class:`ComparisonWindow`.

    Raises:
        ValueError: no bar of the challenger's test window is stored, or out of sample for the
            challenger itself; the message says what to ingest or retrain.
    """
    policy = policy or PromotionPolicy()
    index = pd.DatetimeIndex(bars)
    index = (index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")).sort_values()
    test_start = as_utc(challenger.test_start, "test_start")
    test_end = as_utc(challenger.test_end, "test_end")
    test_first = int(index.searchsorted(test_start, side="left"))
    stop = int(index.searchsorted(test_end, side="right"))  # one past the last bar of the window
    own_first, own_seen = _seen(challenger, index)
    own_first = max(own_first, test_first)
    test = f"{_day(test_start)}..{_day(test_end)}"
    who = f"challenger v{challenger.version}"
    if own_first >= stop:
        raise ValueError(
            f"no stored bar of the {who}'s test window {test} is out of sample for it ({own_seen}); "
            f"ingest the bars of that window (`fks ingest`) or retrain the challenger"
        )

    def window(first: int, problem: str | None = None, note: str | None = None) -> ComparisonWindow:
        return ComparisonWindow(
            start=index[first],
            end=index[stop - 1],
            n_bars=stop - first,
            narrowed=first > test_first,
            problem=problem,
            note=note,
        )

    if champion is None:
        note = None
        if own_first > test_first:
            span = f"{_day(index[own_first])}..{_day(index[stop - 1])}"
            note = f"backtested on {span}, narrowed from the test window {test}: the {who} was {own_seen}"
        return window(own_first, note=note)
    rival = f"champion v{champion.version}"
    if (champion.symbol.upper(), champion.timeframe) != (challenger.symbol.upper(), challenger.timeframe):
        problem = (
            f"{rival.capitalize()} is on {champion.symbol} {champion.timeframe}, the {who} on "
            f"{challenger.symbol} {challenger.timeframe}: they cannot be compared on the same bars; "
            "register a model for another series under its own name, or promote with --force "
            "to replace the champion anyway"
        )
        return window(own_first, problem)
    rival_first, rival_seen = _seen(champion, index)
    first = max(own_first, rival_first)
    if first >= stop:
        problem = (
            f"No bar of the {who}'s test window {test} is out of sample for the {rival} "
            f"({rival_seen}): they cannot be compared fairly; ingest later bars and retrain the "
            "challenger so that its test window extends past the champion's data"
        )
        return window(own_first, problem)
    n_bars = stop - first
    span = f"{_day(index[first])}..{_day(index[stop - 1])}"
    if n_bars < policy.min_window_bars:
        problem = (
            f"Only {n_bars} bars ({span}) of the {who}'s test window {test} are out of sample for "
            f"the {rival} ({rival_seen}), fewer than min_window_bars {policy.min_window_bars}: too "
            "few to compare them; ingest later bars and retrain the challenger, or lower "
            "min_window_bars"
        )
        return window(own_first, problem)
    if first == test_first:
        return window(first)
    why = f"{rival} was {rival_seen}" if rival_first >= own_first else f"the {who} was {own_seen}"
    note = (
        f"compared on {span} ({n_bars} bars, out of sample for both), narrowed from the test "
        f"window {test}: {why}"
    )
    return window(first, note=note)


@dataclass(frozen=True)
class GateInput:
    """What the gate decides on: backtest metrics of one window, and facts about that backtest.

    Attributes:
        challenger: the challenger's backtest metrics (``{"sharpe": 0.61, "max_drawdown": -0.2}``).
        champion: the current champion's metrics on the same window, or None when there is no
            champion yet.
        baseline_name: the best baseline (see :func:`best_baseline`).
        baseline: that baseline's metrics on the same window.
        window_start, window_end: the backtest window (UTC ``pd.Timestamp``; naive values,
            datetimes and ISO strings are accepted and taken as UTC).
        data_validated: whether the window's data passed validation.
        n_trades: trades the challenger made in the backtest.
        champion_problem: why the champion (there is one) cannot be compared, e.g.
            :attr:`ComparisonWindow.problem`; the champion check fails with this reason. None
            when it can be compared (or there is no champion).
        window_note: why the window is narrower than the challenger's test window
            (:attr:`ComparisonWindow.note`); added to the champion check's sentence (unless
            ``champion_problem`` replaces it).
        baseline_problems: ``{baseline: why}`` for each configured baseline that could not be
            evaluated; any makes the baseline check fail with these reasons. ``baseline_name``
            and ``baseline`` are then the best of the others (or, when none could be evaluated,
            the first name and an empty mapping).

    Raises:
        ValueError: an empty ``baseline_name``, a window that is not two timestamps or ends
            before it starts, a negative ``n_trades``, or an empty problem or note.
        TypeError: a metrics argument that is not a mapping, ``data_validated`` not a bool,
            ``n_trades`` not an int, or ``baseline_problems`` not a mapping of strings.
    """

    challenger: Mapping[str, Any]
    champion: Mapping[str, Any] | None
    baseline_name: str
    baseline: Mapping[str, Any]
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    data_validated: bool
    n_trades: int
    champion_problem: str | None = None
    window_note: str | None = None
    baseline_problems: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("challenger", "baseline"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping of metrics, not {type(value).__name__}")
            object.__setattr__(self, name, dict(value))
        if self.champion is not None:
            if not isinstance(self.champion, Mapping):
                kind = type(self.champion).__name__
                raise TypeError(f"champion must be a mapping of metrics or None, not {kind}")
            object.__setattr__(self, "champion", dict(self.champion))
        if not isinstance(self.baseline_name, str) or not self.baseline_name.strip():
            raise ValueError(f"baseline_name must be a non-empty string, got {self.baseline_name!r}")
        start = as_utc(self.window_start, "window_start")
        end = as_utc(self.window_end, "window_end")
        if end < start:
            raise ValueError(f"window_end {end} is before window_start {start}")
        object.__setattr__(self, "window_start", start)
        object.__setattr__(self, "window_end", end)
        if not isinstance(self.data_validated, bool):
            raise TypeError(f"data_validated must be a bool, not {type(self.data_validated).__name__}")
        if isinstance(self.n_trades, bool) or not isinstance(self.n_trades, int):
            raise TypeError(f"n_trades must be an int, not {type(self.n_trades).__name__}")
        if self.n_trades < 0:
            raise ValueError(f"n_trades must not be negative, got {self.n_trades}")
        for name in ("champion_problem", "window_note"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-empty sentence or None, got {value!r}")
        problems = self.baseline_problems
        if not isinstance(problems, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in problems.items()
        ):
            raise TypeError("baseline_problems must map baseline names to reasons (strings)")
        if any(not k.strip() or not v.strip() for k, v in problems.items()):
            raise ValueError("baseline_problems needs a non-empty name and reason for each baseline")
        object.__setattr__(self, "baseline_problems", dict(problems))


@dataclass(frozen=True)
class Decision:
    """What the gate decided, and why.

    Attributes:
        promote: make the challenger the champion.
        forced: promoted by ``force=True`` (the reasons then say what would have refused it).
        reasons: sentences a person can read: the passed checks when promoted on merit, every
            failed check when refused or forced.
        metrics: a JSON-ready snapshot: ``primary_metric``, ``challenger_value``,
            ``champion_value``, ``baseline_name``, ``baseline_value``,
            ``improvement_vs_champion``, ``improvement_vs_baseline``, ``max_drawdown``,
            ``n_trades``, ``data_validated``, ``window_start``/``window_end`` (ISO),
            ``champion_problem``, ``window_note``, ``baseline_problems``, the three metrics dicts
            (``challenger``, ``champion``, ``baseline``), ``checks`` and
            the ``policy``. Values that were missing or not finite are None.
        checks: each check of :data:`CHECKS` and whether it passed.
    """

    promote: bool
    forced: bool
    reasons: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """``"forced"``, ``"promoted"`` or ``"refused"`` (the ``promotions.decision`` value)."""
        if self.forced:
            return "forced"
        return "promoted" if self.promote else "refused"

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that failed, in :data:`CHECKS` order."""
        return [name for name in CHECKS if not self.checks.get(name, True)]


def _compare(
    what: str, metric: str, challenger: float | None, other: float | None, margin: float
) -> tuple[bool, str, float | None]:
    """One margin check; ``what`` is ``champion 0.42``-style text without the value."""
    label = _label(metric)
    if challenger is None:
        shown = "" if other is None else f" {_num(other)}"
        missing = f"{label} of the challenger is missing or not finite; it cannot be compared with {what}"
        missing += shown
        return False, missing, None
    if other is None:
        missing = f"{label} of the {what} is missing or not finite; the challenger cannot be compared with it"
        return False, missing, None
    gain = improvement(metric, challenger, other)
    ok = gain > 0 and gain >= margin - _EPS
    if ok:
        sentence = (
            f"{label} {_num(challenger)} beats {what} {_num(other)} by {_num(gain)} >= margin {_num(margin)}"
        )
    else:
        sentence = (
            f"{label} {_num(challenger)} does not beat {what} {_num(other)} by margin {_num(margin)}: "
            f"improvement {_num(gain)}"
        )
    return ok, sentence, gain


def decide(inputs: GateInput, policy: PromotionPolicy | None = None, *, force: bool = False) -> Decision:
    """Decide whether the challenger of ``inputs`` replaces the champion under ``policy``.

    Checks, in order (see :mod:`config.promotion`): it beats the champion (when there is one)
    and the best baseline on ``policy.primary_metric`` by the policy's margins (a champion that
    cannot be compared, ``inputs.champion_problem``, or a configured baseline that could not be
    evaluated, ``inputs.baseline_problems``, fails that check with the reason); its max drawdown
    is not worse than ``policy.max_drawdown_floor``; it made at least ``policy.min_trades``
    trades; the window's data passed validation (when ``policy.require_validated_data``). A
    metric that is missing or not finite fails its check.

    Args:
        inputs: the backtest facts.
        policy: the thresholds; the defaults of :class:`PromotionPolicy` when None.
        force: promote whatever the checks say; the decision is ``forced`` and its reasons list
            what would have refused it (or say that every check passed anyway).

    Returns:
        The :class:`Decision`: promoted only when every check passes, or when forced.
    """
    policy = policy or PromotionPolicy()
    metric = policy.primary_metric
    challenger = _finite(inputs.challenger, metric)
    champion = None if inputs.champion is None else _finite(inputs.champion, metric)
    baseline = _finite(inputs.baseline, metric)
    checks: dict[str, bool] = {}
    sentences: dict[str, str] = {}

    gain_champion: float | None = None
    if inputs.champion_problem is not None:
        checks["champion"] = False
        sentences["champion"] = inputs.champion_problem
    elif inputs.champion is None:
        checks["champion"] = True
        sentences["champion"] = (
            "No champion yet: the challenger only has to beat the baseline and pass the guards"
        )
    else:
        checks["champion"], sentences["champion"], gain_champion = _compare(
            "champion", metric, challenger, champion, policy.min_margin_vs_champion
        )
    if inputs.window_note and inputs.champion_problem is None:
        sentences["champion"] += f" ({inputs.window_note})"
    checks["baseline"], sentences["baseline"], gain_baseline = _compare(
        f"baseline '{inputs.baseline_name}'", metric, challenger, baseline, policy.min_margin_vs_baseline
    )
    if inputs.baseline_problems:
        unevaluated = [
            f"Baseline '{name}' could not be evaluated: {why}"
            for name, why in inputs.baseline_problems.items()
        ]
        if not checks["baseline"] and inputs.baseline:
            unevaluated.append(sentences["baseline"])
        checks["baseline"] = False
        sentences["baseline"] = "; ".join(unevaluated)

    drawdown = _finite(inputs.challenger, DRAWDOWN_METRIC)
    floor = policy.max_drawdown_floor
    if drawdown is None:
        checks["drawdown"] = False
        sentences["drawdown"] = (
            "Max drawdown of the challenger is missing or not finite; "
            f"the floor {floor:.1%} cannot be checked"
        )
    elif -abs(drawdown) >= floor - _EPS:
        checks["drawdown"] = True
        sentences["drawdown"] = f"Max drawdown {-abs(drawdown):.1%} is within the floor {floor:.1%}"
    else:
        checks["drawdown"] = False
        sentences["drawdown"] = f"Max drawdown {-abs(drawdown):.1%} is worse than the floor {floor:.1%}"

    trades = inputs.n_trades
    checks["trades"] = trades >= policy.min_trades
    sentences["trades"] = (
        f"{trades} trades >= minimum {policy.min_trades}"
        if checks["trades"]
        else f"{trades} trades < minimum {policy.min_trades}: too few for the metrics to be trusted"
    )

    window = f"{inputs.window_start.isoformat()} to {inputs.window_end.isoformat()}"
    if not policy.require_validated_data:
        checks["data"] = True
        sentences["data"] = "Validated data is not required by the policy"
    elif inputs.data_validated:
        checks["data"] = True
        sentences["data"] = f"Backtest data {window} passed validation"
    else:
        checks["data"] = False
        sentences["data"] = (
            f"Backtest data {window} has not passed validation; the policy requires validated data"
        )

    failed = [sentences[name] for name in CHECKS if not checks[name]]
    passed = [sentences[name] for name in CHECKS if checks[name]]
    if force:
        head = (
            f"Promotion forced over {len(failed)} failed check(s)"
            if failed
            else "Promotion forced; every check passed anyway"
        )
        reasons = [head, *(failed or passed)]
    else:
        reasons = failed if failed else passed

    snapshot: dict[str, Any] = {
        "primary_metric": metric,
        "challenger_value": challenger,
        "champion_value": champion,
        "baseline_name": inputs.baseline_name,
        "baseline_value": baseline,
        "improvement_vs_champion": gain_champion,
        "improvement_vs_baseline": gain_baseline,
        "max_drawdown": drawdown,
        "n_trades": trades,
        "data_validated": inputs.data_validated,
        "window_start": inputs.window_start.isoformat(),
        "window_end": inputs.window_end.isoformat(),
        "champion_problem": inputs.champion_problem,
        "window_note": inputs.window_note,
        "baseline_problems": dict(inputs.baseline_problems),
        "challenger": dict(inputs.challenger),
        "champion": None if inputs.champion is None else dict(inputs.champion),
        "baseline": dict(inputs.baseline),
        "checks": dict(checks),
        "policy": policy.model_dump(),
    }
    return Decision(
        promote=force or not failed,
        forced=force,
        reasons=reasons,
        metrics=snapshot,
        checks=checks,
    )
