"""The promotion gate in flow runs: refusal, forced promotions, rollback, all recorded."""

from __future__ import annotations

import mlflow
import pytest

from config.backtest import PromoteConfig
from config.flows import IngestConfig, InputError
from config.models import ForecasterConfig
from config.settings import Settings
from flows.ingest import ingest
from flows.promote import promote
from flows.train_forecaster import train_forecaster
from models.registry import get_version_by_alias
from storage import list_promotions
from tasks.promote import rollback_model
from tasks.store import store_for

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

SMALL = ForecasterConfig(symbol="GOOGL", lookback=10, units=(8,), epochs=2, walk_forward={"folds": 1}, seed=4)


def test_gate_refuses_forces_and_rolls_back_with_a_recorded_story(settings: Settings) -> None:
    ingest(IngestConfig(symbols=["GOOGL"]), settings)
    with pytest.raises(InputError, match="no @challenger"):
        promote(PromoteConfig(), settings)
    train_forecaster(SMALL, settings)
    impossible = PromoteConfig(policy={"min_trades": 1_000_000})
    refused = promote(impossible, settings)
    assert refused.outcome == "refused" and not refused.promoted
    assert any("trades" in r for r in refused.reasons)
    assert refused.baseline_problems == {}  # a normal training run logs every default baseline
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    assert get_version_by_alias("fks-forecaster", "champion") is None
    assert get_version_by_alias("fks-forecaster", "challenger") is not None

    forced = promote(PromoteConfig(policy={"min_trades": 1_000_000}, force=True), settings)
    assert forced.outcome == "forced" and forced.promoted
    v1 = get_version_by_alias("fks-forecaster", "champion")
    assert v1 is not None and str(v1.version) == "1" and v1.tags["gate_forced"].lower() == "true"

    train_forecaster(SMALL.model_copy(update={"seed": 5}), settings)
    second = promote(PromoteConfig(force=True), settings)
    assert second.champion_version == "1" and second.challenger_version == "2"
    # trained on the same bars: the challenger's whole test window is out of sample for both
    assert not second.window_narrowed and second.window_bars is not None and second.window_bars >= 60
    assert not any("out of sample for the champion" in r or " is on " in r for r in second.reasons)
    assert str(get_version_by_alias("fks-forecaster", "champion").version) == "2"  # type: ignore[union-attr]

    assert rollback_model("fks-forecaster", settings, actor="test", reason="v2 misbehaved") == "1"
    assert str(get_version_by_alias("fks-forecaster", "champion").version) == "1"  # type: ignore[union-attr]
    with pytest.raises(InputError, match="previous-champion"):
        rollback_model("fks-forecaster", settings, actor="test")
    with store_for(settings).connect() as conn:
        story = [(p.decision, str(p.challenger_version)) for p in list_promotions(conn, "fks-forecaster")]
    assert story == [("refused", "1"), ("forced", "1"), ("forced", "2"), ("rolled_back", "1")]
