"""The stage display of ``fks pipeline``: the pipeline announces each stage in order, the view
describes it, and the epoch tap watches every fit without changing it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from config.flows import PipelineConfig
from config.models import ForecasterConfig
from flows.cli.pipeline import StageView, epoch_tap
from flows.pipeline import STAGES, PipelineSummary, watching_stages


def _fake_stage(name: str, calls: list[str]) -> Any:
    from backtest.evaluate import BacktestSummary
    from ingestion.features import FeaturesSummary
    from ingestion.ingest import IngestSummary
    from models.allocator.service import AllocatorSummary
    from models.forecaster.service import TrainingSummary
    from models.promotion import PromotionSummary

    kinds: dict[str, Any] = {
        "ingest": IngestSummary,
        "features": FeaturesSummary,
        "train_forecaster": TrainingSummary,
        "backtest": BacktestSummary,
        "promote": PromotionSummary,
        "train_allocator": AllocatorSummary,
    }

    def run(*args: object) -> object:
        calls.append(name)
        return kinds[name].model_construct()

    return run


@pytest.mark.parametrize("allocator", [True, False])
def test_the_pipeline_announces_each_stage_before_it_runs(
    monkeypatch: pytest.MonkeyPatch, settings: Any, allocator: bool
) -> None:
    import flows.pipeline as module

    calls: list[str] = []
    for name in ("ingest", "features", "train_forecaster", "backtest", "promote", "train_allocator"):
        monkeypatch.setattr(module, name, _fake_stage(name, calls))
    fanned: list[Any] = []

    def fanned_out(flow: Any, given: Any) -> Any:  # the fakes are not flows: record, return as is
        fanned.append((flow, given))
        return flow

    monkeypatch.setattr(module, "fanned_out", fanned_out)
    config = PipelineConfig()
    config.allocator.enabled = allocator
    seen: list[tuple[str, int]] = []
    with watching_stages(lambda stage: seen.append((stage, len(calls)))):
        summary = module.pipeline.fn(config, settings)
    assert isinstance(summary, PipelineSummary)
    expected = STAGES if allocator else STAGES[:5]
    assert [stage for stage, _ in seen] == list(expected)
    assert [n for _, n in seen] == list(range(len(expected)))  # announced before the stage's flow ran
    assert not module._listeners
    # the per-series stages run on FKS_TASK_RUNNER: ingest, features (and the allocator's ingest)
    assert [(f, g) for f, g in fanned] == [(module.ingest, settings), (module.features, settings)] + (
        [(module.ingest, settings)] if allocator else []
    )

    def broken(stage: str) -> None:
        raise ZeroDivisionError(stage)

    with watching_stages(broken):  # a failing display never fails the pipeline
        module.pipeline.fn(config, settings)


def test_the_view_describes_stage_fit_epoch_and_series() -> None:
    view = StageView(PipelineConfig())
    assert view.describe() == "starting"
    view.begin("ingest")
    assert view.describe() == "[1/7] ingest + validate"
    view.detail = "1/2 series validated and stored (now SPX)"
    assert view.describe() == "[1/7] ingest + validate: 1/2 series validated and stored (now SPX)"
    view.begin("train forecaster")
    view.epoch(2, 5, 20)
    assert view.describe() == "[3/7] train forecaster: fit 2, epoch 5/20"
    view.begin("allocator ingest")
    assert view.describe() == "[6/7] allocator: ingest + validate"


def test_the_epoch_tap_reports_every_epoch_keeps_the_fit_own_callback_and_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models.forecaster import training

    own: list[int] = []

    def fake_fit(*args: object, epoch_callback: Any = None, epochs: int | None = None) -> str:
        for epoch in range(3 if epochs is None else epochs):
            if epoch_callback is not None:
                epoch_callback(epoch, {"loss": 1.0})
        return "fitted"

    monkeypatch.setattr(training, "fit_lstm", fake_fit)
    config = ForecasterConfig(epochs=3)
    seen: list[tuple[int, int, int]] = []
    with epoch_tap(lambda *e: seen.append(e)):
        fit: Any = training.fit_lstm
        assert fit(0, 0, 0, 0, config) == "fitted"
        fit(0, 0, 0, 0, config, epoch_callback=lambda e, logs: own.append(e), epochs=2)
    assert seen == [(1, 1, 3), (1, 2, 3), (1, 3, 3), (2, 1, 2), (2, 2, 2)]
    assert own == [0, 1]
    assert training.fit_lstm is fake_fit


@pytest.mark.slow
def test_a_fit_watched_by_the_tap_is_the_same_fit() -> None:
    from models.forecaster import training
    from models.forecaster.network import predict_lstm

    rng = np.random.default_rng(3)
    X = rng.normal(size=(160, 8, 2)).astype("float32")
    y = (0.5 * X[:, -1, 0] + 0.1 * rng.normal(size=160)).astype("float32")
    config = ForecasterConfig(lookback=8, units=(4,), epochs=3, patience=3, seed=5, batch_size=32)
    args = (X[:120], y[:120], X[120:], y[120:], config)
    plain = training.fit_lstm(*args)
    seen: list[tuple[int, int, int]] = []
    with epoch_tap(lambda *e: seen.append(e)):
        watched = training.fit_lstm(*args)
    assert [e for _, e, _ in seen] == [1, 2, 3][: watched.epochs_run]
    assert watched.history == plain.history
    np.testing.assert_array_equal(
        predict_lstm(watched.model, X[120:])[0], predict_lstm(plain.model, X[120:])[0]
    )


def test_a_pipeline_config_file_is_laid_over_the_defaults(tmp_path: Any) -> None:
    from config.flows import InputError
    from flows.cli.pipeline import pipeline_config

    assert pipeline_config(None).forecaster == PipelineConfig().forecaster
    small = tmp_path / "small.yaml"
    small.write_text("forecaster: {epochs: 2, walk_forward: {folds: 1}}\nallocator: {enabled: false}\n")
    config = pipeline_config(small)
    default = PipelineConfig()
    assert config.forecaster.epochs == 2 and config.forecaster.walk_forward.folds == 1
    assert config.forecaster.symbol == default.forecaster.symbol == "SPX"  # untouched defaults kept
    assert config.forecaster.lookback == default.forecaster.lookback
    assert not config.allocator.enabled and config.allocator.train == default.allocator.train
    small.write_text("- not a mapping\n")
    with pytest.raises(InputError, match="expected a mapping of PipelineConfig fields"):
        pipeline_config(small)
    small.write_text("forecaster: {epochz: 2}\n")
    with pytest.raises(ValueError, match="epochz"):
        pipeline_config(small)
