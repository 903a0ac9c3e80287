"""Tuning sees validation folds only: every span the objective trains and scores on ends before test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import models.forecaster.tuning as tuning
from config.models import ForecasterConfig
from features import get_feature_set
from models.forecaster.training import prepare_dataset
from models.splits import chronological_split
from providers.csv import parse_bars_csv

pytestmark = pytest.mark.slow


def test_objective_never_touches_the_test_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bars = parse_bars_csv(Path(__file__).parents[2] / "data" / "samples" / "googl_daily.csv").bars
    feature_set = get_feature_set("minimal")
    config = ForecasterConfig(
        symbol="GOOGL", units=(4,), walk_forward={"folds": 2}, tuning={"trials": 2, "epochs": 1}, seed=1
    )
    seen: list[tuple[ForecasterConfig, slice]] = []
    real_walk_forward = tuning.walk_forward

    def recording_walk_forward(dataset: Any, candidate: ForecasterConfig, span: slice, **kwargs: Any) -> Any:
        seen.append((candidate, span))
        return real_walk_forward(dataset, candidate, span, **kwargs)

    monkeypatch.setattr(tuning, "walk_forward", recording_walk_forward)
    result = tuning.tune(bars, feature_set, config, f"sqlite:///{tmp_path / 'optuna.db'}")
    assert result.trials == 2 and len(seen) == 2
    for candidate, span in seen:
        n = prepare_dataset(bars, feature_set, candidate).n_samples
        split = chronological_split(
            n,
            val_fraction=candidate.val_fraction,
            test_fraction=candidate.test_fraction,
            purge=candidate.purge,
        )
        assert span.stop == split.val.stop and span.stop + candidate.purge <= split.test.start
    assert result.best_config.lookback in tuning.LOOKBACK_CHOICES
    again = tuning.tune(bars, feature_set, config, f"sqlite:///{tmp_path / 'optuna.db'}")
    assert again.trials == 4  # the study persists in its database: a second worker adds to it
