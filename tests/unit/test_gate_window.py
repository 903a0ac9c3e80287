"""The promotion gate's comparison window (out of sample for challenger and champion) and its
refusals: a narrowed window, no or too few bars left, another symbol or timeframe; and how
:func:`models.gate.decide` reports those and baselines that could not be evaluated."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from config.promotion import PromotionPolicy
from models.gate import ComparisonWindow, GateInput, comparison_window, decide
from models.registry import ModelRef

BARS = pd.date_range("2024-01-01", periods=300, freq="D", tz="UTC")  # 2024-01-01 .. 2024-10-26
POLICY = PromotionPolicy(min_window_bars=20)
GOOD = {"sharpe": 0.61, "max_drawdown": -0.18}


def _ref(version: str = "2", **overrides: Any) -> ModelRef:
    """A version trained up to 2024-06-30 and tested 2024-07-15 .. 2024-10-20 on SPX 1d."""
    values: dict[str, Any] = {
        "name": "fks-forecaster",
        "version": version,
        "run_id": f"run{version}",
        "symbol": "SPX",
        "timeframe": "1d",
        "test_start": pd.Timestamp("2024-07-15T00:00:00+00:00"),
        "test_end": pd.Timestamp("2024-10-20T00:00:00+00:00"),
        "val_end": pd.Timestamp("2024-06-30T00:00:00+00:00"),
        "horizon": 1,
    }
    values.update(overrides)
    return ModelRef(**values)


CHALLENGER = _ref()
TEST_BARS = 98  # 2024-07-15 .. 2024-10-20


def _champion(**overrides: Any) -> ModelRef:
    return _ref("1", **overrides)


def _day(ts: pd.Timestamp) -> str:
    return f"{ts:%Y-%m-%d}"


def test_without_a_champion_the_window_is_the_challengers_test_window() -> None:
    window = comparison_window(CHALLENGER, None, BARS, POLICY)
    assert (_day(window.start), _day(window.end), window.n_bars) == ("2024-07-15", "2024-10-20", TEST_BARS)
    assert not window.narrowed and window.problem is None and window.note is None


def test_a_champion_trained_before_the_test_window_keeps_it_whole() -> None:
    earlier = _champion(val_end=pd.Timestamp("2024-05-31", tz="UTC"))
    window = comparison_window(CHALLENGER, earlier, BARS, POLICY)
    assert (window.start, window.end, window.n_bars) == (BARS[196], BARS[293], TEST_BARS)
    assert not window.narrowed and window.problem is None and window.note is None
    # a champion that validated on the very bar before the test window: still whole
    touching = comparison_window(CHALLENGER, _champion(val_end=pd.Timestamp("2024-07-14")), BARS, POLICY)
    assert touching.n_bars == TEST_BARS and not touching.narrowed


def test_an_overlapping_champion_narrows_the_window_to_the_bars_after_its_data() -> None:
    overlapping = _champion(val_end=pd.Timestamp("2024-08-31T00:00:00+00:00"))
    window = comparison_window(CHALLENGER, overlapping, BARS, POLICY)
    assert _day(window.start) == "2024-09-01" and _day(window.end) == "2024-10-20"
    assert window.n_bars == 50 and window.narrowed and window.problem is None
    assert window.note is not None
    assert "narrowed from the test window 2024-07-15..2024-10-20" in window.note
    assert "champion v1 was trained and validated up to 2024-08-31" in window.note
    # the narrowed window is what the challenger must be backtested on, and the reason says so
    decision = decide(
        GateInput(
            challenger=GOOD,
            champion={"sharpe": 0.42},
            baseline_name="buy and hold",
            baseline={"sharpe": 0.3},
            window_start=window.start,
            window_end=window.end,
            data_validated=True,
            n_trades=42,
            window_note=window.note,
        ),
        POLICY,
    )
    assert decision.promote
    assert decision.reasons[0].startswith("Sharpe 0.61 beats champion 0.42")
    assert "compared on 2024-09-01..2024-10-20 (50 bars" in decision.reasons[0]
    assert decision.metrics["window_start"] == "2024-09-01T00:00:00+00:00"


def test_a_longer_horizon_keeps_the_bars_whose_targets_the_champion_saw_out() -> None:
    # the champion's last validation label reached 5 bars past 2024-08-31: first clean bar 09-05
    window = comparison_window(
        CHALLENGER, _champion(val_end=pd.Timestamp("2024-08-31", tz="UTC"), horizon=5), BARS, POLICY
    )
    assert _day(window.start) == "2024-09-05" and window.n_bars == 46
    assert window.note is not None and "labels 5 bars beyond" in window.note


def test_a_champion_without_a_logged_val_end_is_taken_to_have_seen_everything_before_its_test() -> None:
    old = _champion(val_end=None, test_start=pd.Timestamp("2024-09-10", tz="UTC"))
    window = comparison_window(CHALLENGER, old, BARS, POLICY)
    assert _day(window.start) == "2024-09-10" and window.narrowed and window.problem is None
    assert window.note is not None and "logged no data.val_end" in window.note
    older = _champion(val_end=None, test_start=pd.Timestamp("2024-03-01", tz="UTC"))
    assert comparison_window(CHALLENGER, older, BARS, POLICY).n_bars == TEST_BARS


def test_no_window_left_refuses_with_the_reason() -> None:
    later = _champion(val_end=pd.Timestamp("2024-10-20", tz="UTC"))
    window = comparison_window(CHALLENGER, later, BARS, POLICY)
    assert window.problem is not None
    assert window.problem.startswith(
        "No bar of the challenger v2's test window 2024-07-15..2024-10-20 is out of sample for the "
        "champion v1 (trained and validated up to 2024-10-20)"
    )
    assert "retrain the challenger" in window.problem
    # the challenger's own out-of-sample window is still what the other checks run on
    assert (window.start, window.end, window.n_bars) == (BARS[196], BARS[293], TEST_BARS)
    decision = decide(_gate(window, champion=None))
    assert not decision.promote and decision.failed_checks == ["champion"]
    assert decision.reasons == [window.problem]
    assert decision.metrics["champion_problem"] == window.problem
    forced = decide(_gate(window, champion=None), force=True)
    assert forced.promote and forced.forced and forced.reasons[1] == window.problem


def test_too_few_bars_left_refuses_with_the_reason() -> None:
    late = _champion(val_end=pd.Timestamp("2024-10-10", tz="UTC"))
    window = comparison_window(CHALLENGER, late, BARS, POLICY)
    assert window.problem is not None
    assert window.problem.startswith("Only 10 bars (2024-10-11..2024-10-20) of the challenger v2's test")
    assert "fewer than min_window_bars 20" in window.problem
    assert window.n_bars == TEST_BARS  # the challenger's own window for the other checks
    assert decide(_gate(window, champion=None)).failed_checks == ["champion"]
    # exactly the minimum is enough
    enough = comparison_window(CHALLENGER, late, BARS, PromotionPolicy(min_window_bars=10))
    assert enough.problem is None and enough.n_bars == 10 and _day(enough.start) == "2024-10-11"
    # the default minimum applies without a policy
    assert "min_window_bars 60" in (comparison_window(CHALLENGER, late, BARS).problem or "")


@pytest.mark.parametrize(
    ("overrides", "series"),
    [({"symbol": "GOOGL"}, "GOOGL 1d"), ({"timeframe": "1h"}, "SPX 1h")],
    ids=["symbol", "timeframe"],
)
def test_a_champion_on_another_series_refuses_with_the_reason(overrides: dict[str, Any], series: str) -> None:
    window = comparison_window(CHALLENGER, _champion(**overrides), BARS, POLICY)
    assert window.problem is not None
    assert window.problem.startswith(f"Champion v1 is on {series}, the challenger v2 on SPX 1d:")
    assert "cannot be compared on the same bars" in window.problem
    assert window.n_bars == TEST_BARS and not window.narrowed
    assert decide(_gate(window, champion=None)).failed_checks == ["champion"]
    # the symbol is compared like the store compares it: case-insensitively
    assert comparison_window(CHALLENGER, _champion(symbol="spx"), BARS, POLICY).problem is None


def test_a_challenger_whose_own_data_reaches_into_its_test_window_is_narrowed_too() -> None:
    odd = _ref(val_end=pd.Timestamp("2024-07-31", tz="UTC"))  # a run whose params disagree
    window = comparison_window(odd, None, BARS, POLICY)
    assert _day(window.start) == "2024-08-01" and window.narrowed and window.problem is None
    assert (
        window.note is not None
        and "the challenger v2 was trained and validated up to 2024-07-31" in window.note
    )
    decision = decide(_gate(window, champion=None))
    assert decision.promote and decision.reasons[0].startswith("No champion yet")
    assert window.note in decision.reasons[0]


def test_a_test_window_without_bars_is_bad_input() -> None:
    with pytest.raises(ValueError, match=r"no stored bar of the challenger v2's test window.*fks ingest"):
        comparison_window(CHALLENGER, None, BARS[:150], POLICY)
    with pytest.raises(ValueError, match="out of sample for it"):
        comparison_window(_ref(val_end=pd.Timestamp("2024-12-01", tz="UTC")), None, BARS, POLICY)


def test_naive_timestamps_are_utc() -> None:
    naive = _ref(test_start=pd.Timestamp("2024-07-15"), test_end=pd.Timestamp("2024-10-20"))
    champion = _champion(val_end=pd.Timestamp("2024-08-31"))
    assert comparison_window(naive, champion, BARS.tz_localize(None), POLICY).n_bars == 50


def _gate(window: ComparisonWindow, **overrides: Any) -> GateInput:
    values: dict[str, Any] = {
        "challenger": GOOD,
        "champion": {"sharpe": 0.42},
        "baseline_name": "buy and hold",
        "baseline": {"sharpe": 0.3},
        "window_start": window.start,
        "window_end": window.end,
        "data_validated": True,
        "n_trades": 42,
        "champion_problem": window.problem,
        "window_note": window.note,
    }
    values.update(overrides)
    return GateInput(**values)


def test_a_baseline_that_could_not_be_evaluated_fails_the_baseline_check() -> None:
    window = comparison_window(CHALLENGER, None, BARS, POLICY)
    why = "training run run2 logged no predictions/test_predictions.csv; retrain the model"
    decision = decide(_gate(window, champion=None, baseline_problems={"ridge": why}))
    assert not decision.promote and decision.failed_checks == ["baseline"]
    assert decision.reasons == [f"Baseline 'ridge' could not be evaluated: {why}"]
    assert decision.metrics["baseline_problems"] == {"ridge": why}
    # losing to the baselines that were evaluated is reported too
    losing = decide(
        _gate(window, champion=None, baseline={"sharpe": 0.9}, baseline_problems={"hist_gb": "no column"})
    )
    assert losing.reasons == [
        "Baseline 'hist_gb' could not be evaluated: no column; "
        "Sharpe 0.61 does not beat baseline 'buy and hold' 0.9 by margin 0: improvement -0.29"
    ]
    # nothing evaluated at all: only the reasons
    empty = decide(
        _gate(window, champion=None, baseline_name="ridge", baseline={}, baseline_problems={"ridge": why})
    )
    assert empty.reasons == [f"Baseline 'ridge' could not be evaluated: {why}"]
    with pytest.raises(ValueError, match="baseline_problems"):
        _gate(window, baseline_problems={"ridge": " "})
    with pytest.raises(TypeError, match="baseline_problems"):
        _gate(window, baseline_problems={"ridge": 3})
    with pytest.raises(ValueError, match="champion_problem"):
        _gate(window, champion_problem="")
