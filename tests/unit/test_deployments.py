"""The deployment declarations: prefect.yaml is what they generate, Prefect's own reader accepts
it, schedules follow each calendar's close, and the retraining decision crosses its thresholds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from config.assets import AssetSpec, load_asset_specs
from config.deployments import (
    close_schedule,
    declare_deployments,
    prefect_yaml,
    render_prefect_yaml,
    work_queues,
)
from config.retraining import RetrainConfig
from config.settings import PROJECT_ROOT, Settings
from execution.monitor import decide, performance_of
from storage.desk import Cycle


def _shipped() -> list[AssetSpec]:
    return load_asset_specs(PROJECT_ROOT / "config" / "assets.yaml")


def test_prefect_yaml_is_what_the_declarations_generate() -> None:
    shipped = (PROJECT_ROOT / "prefect.yaml").read_text(encoding="utf-8")
    assert shipped == render_prefect_yaml(declare_deployments(_shipped())), (
        "prefect.yaml differs from config/deployments.py: run `fks deploy --write`"
    )


def test_prefect_reads_every_deployment_with_its_settings() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    specs = declare_deployments(_shipped())
    model = PrefectYamlModel.model_validate(yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text()))
    assert [d.name for d in model.deployments] == [s.name for s in specs]
    by_name = {d.name: d for d in model.deployments}
    daily = by_name["1d-xnys"]
    assert daily.entrypoint == "flows.deployed:ingest"
    assert daily.parameters == {"config": {"symbols": ["SPX", "GOOGL"], "timeframe": "1d"}}
    assert daily.work_pool is not None and daily.work_pool.work_queue_name == "ingest"
    assert daily.schedules is not None and len(daily.schedules) == 1
    assert model.pull == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $FKS_PROJECT_DIR }}"}}
    ]
    assert by_name["paper"].paused is True and by_name["1d-xnys"].paused is False


def test_every_entrypoint_is_a_flow_with_its_declared_name() -> None:
    from prefect.utilities.importtools import import_object

    for spec in declare_deployments(_shipped()):
        flow = import_object(spec.entrypoint)
        assert flow.name == spec.flow, spec.entrypoint
        assert flow.should_validate_parameters, f"{spec.full_name}: JSON parameters must become configs"
        params = flow.validate_parameters(spec.parameters)
        if spec.parameters:  # validate/nightly has none: every stored series
            assert type(params["config"]).__name__.endswith("Config"), spec.full_name


def test_ingestion_is_grouped_by_timeframe_and_calendar_on_the_registry() -> None:
    assets = [
        AssetSpec(symbol="AAA", timeframe="1d", calendar="XNYS"),
        AssetSpec(symbol="BBB", timeframe="1d", calendar="XLON"),
        AssetSpec(symbol="CCC", asset_class="crypto", timeframe="1m"),
        AssetSpec(symbol="DDD", asset_class="crypto", timeframe="1m", enabled=False),
        AssetSpec(symbol="EEE", asset_class="fx", timeframe="1h", enabled=False),
    ]
    ingest = {s.name: s for s in declare_deployments(assets) if s.flow == "ingest"}
    assert list(ingest) == ["1m-24-7", "1h-24-5", "1d-xlon", "1d-xnys"]
    assert ingest["1m-24-7"].parameters["config"]["symbols"] == ["CCC"]  # the enabled ones only
    assert ingest["1m-24-7"].schedules[0].cron == "* * * * *" and not ingest["1m-24-7"].paused
    assert ingest["1h-24-5"].paused and ingest["1h-24-5"].parameters["config"]["symbols"] == ["EEE"]
    assert ingest["1d-xlon"].schedules[0].model_dump() == {
        "cron": "0 17 * * 1-5",
        "timezone": "Europe/London",
        "active": True,
    }
    hourly_nyse = declare_deployments([AssetSpec(symbol="AAA", timeframe="1h", calendar="XNYS")])[0]
    assert hourly_nyse.schedules[0].model_dump() == {  # after each bar anchored at 09:30 closes
        "cron": "35 10-16 * * 1-5",
        "timezone": "America/New_York",
        "active": True,
    }
    for spec in ingest.values():
        assert spec.concurrency is not None and spec.concurrency.limit == 1
        assert spec.concurrency.collision_strategy == "CANCEL_NEW"


@pytest.mark.parametrize(
    ("calendar", "cron", "zone"),
    [
        ("XNYS", "30 16 * * 1-5", "America/New_York"),
        ("24/5", "30 17 * * 1-5", "America/New_York"),
        ("24/7", "30 0 * * *", "UTC"),
        ("XTKS", "0 16 * * 1-5", "Asia/Tokyo"),
    ],
)
def test_daily_ingestion_follows_the_close_of_each_exchange(calendar: str, cron: str, zone: str) -> None:
    import exchange_calendars as xcals

    schedule = close_schedule(calendar)
    assert (schedule.cron, schedule.timezone) == (cron, zone)
    if calendar.startswith("X"):  # the run is after every regular close of a recent year
        cal = xcals.get_calendar(calendar)
        closes = cal.closes["2025-01-01":"2025-12-31"].dt.tz_convert(zone)
        minute, hour = (int(x) for x in cron.split()[:2])
        assert all((c.hour, c.minute) < (hour, minute) for c in closes)


def test_an_unknown_calendar_says_what_to_use() -> None:
    with pytest.raises(ValueError, match="24/7, 24/5 or an exchange-calendars name"):
        close_schedule("NOWHERE")


def test_one_training_at_a_time_and_paper_trading_paused_until_an_account() -> None:
    queues = {q.name: q for q in work_queues()}
    specs = {s.full_name: s for s in declare_deployments(_shipped())}
    assert queues["training"].concurrency_limit == 1
    assert {s.work_queue for n, s in specs.items() if n.startswith("retrain/")} == {"training"}
    assert specs["execute/paper"].paused
    configured = {s.full_name: s for s in declare_deployments(_shipped(), account="desk1")}
    assert not configured["execute/paper"].paused
    assert configured["execute/paper"].parameters == {"config": {"account": "desk1"}}
    doc = prefect_yaml(list(specs.values()), pool="other")
    assert {d["work_pool"]["name"] for d in doc["deployments"]} == {"other"}


def test_retrain_config_gates_the_family_it_trains() -> None:
    allocator = RetrainConfig.model_validate({"family": "allocator"})
    assert allocator.promote is not None and allocator.promote.model == "fks-allocator"
    forecaster = RetrainConfig()
    assert forecaster.backtest is not None and forecaster.backtest.model == "fks-forecaster@challenger"
    with pytest.raises(ValueError, match="leave promote out"):
        RetrainConfig.model_validate({"family": "allocator", "promote": {"family": "forecaster"}})


def _cycles(equity: list[float]) -> list[Cycle]:
    ts = pd.date_range("2024-01-01", periods=len(equity), freq="D", tz="UTC")
    return [Cycle("acct", t, t, 0, 0, e) for t, e in zip(ts, equity, strict=True)]


def test_live_performance_is_the_equity_return_and_the_share_of_gaining_cycles() -> None:
    perf = performance_of("acct", _cycles([100.0, 101.0, 101.0, 99.0, 100.0]))
    assert perf is not None
    assert perf.pnl == pytest.approx(0.0) and perf.cycles == 5
    assert perf.moved == 3 and perf.hit_rate == pytest.approx(2 / 3)
    assert performance_of("acct", _cycles([100.0])) is None


def test_retraining_starts_when_a_threshold_is_crossed(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        retrain_drift_psi=0.2,
        retrain_min_pnl=-0.05,
        retrain_min_hit_rate=0.4,
        retrain_min_cycles=4,
    )
    calm = performance_of("acct", _cycles([100.0, 101.0, 100.5, 101.5, 102.0]))
    assert not decide(settings, max_psi=0.19, performance=calm).retrain
    drifted = decide(settings, max_psi=0.2, psi_feature="rsi_14", performance=calm)
    assert drifted.retrain and drifted.reasons == ["input drift: PSI 0.200 of rsi_14 >= 0.2"]
    losing = performance_of("acct", _cycles([100.0, 99.0, 97.0, 96.0, 94.0]))
    decision = decide(settings, max_psi=None, performance=losing)
    assert decision.retrain and len(decision.reasons) == 2  # P&L -6% and hit rate 0%
    assert "paper P&L -6.00%" in decision.reasons[0] and "hit rate 0%" in decision.reasons[1]
    short = performance_of("acct", _cycles([100.0, 90.0, 80.0]))
    few = decide(settings, max_psi=None, performance=short)
    assert not few.retrain and "judged from 4" in few.notes[0]
    off = settings.model_copy(update={"retrain_drift_psi": None, "retrain_min_pnl": None})
    assert decide(off, max_psi=5.0, performance=short).retrain is False


@pytest.mark.parametrize("command", [["deploy", "--apply"], ["worker"], ["status"]])
def test_without_a_server_the_commands_say_how_to_start_one(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    missing = CliRunner().invoke(app, command)
    assert missing.exit_code == 2
    assert "no Prefect server to talk to: start one with `fks server start`" in missing.output
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # discard port: nothing answers
    silent = CliRunner().invoke(app, command)
    assert silent.exit_code == 2
    assert "does not answer: start it with `fks server start`" in " ".join(silent.output.split())


def test_fks_deploy_lists_the_declarations_and_spots_a_stale_prefect_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.cli._ui import err, out

    for console in (out, err):  # tables as wide as `fks` prints them when piped
        monkeypatch.setattr(console, "_width", 200)
    listed = CliRunner().invoke(app, ["deploy", "--pool", "elsewhere"])
    assert listed.exit_code == 0, listed.output
    assert "ingest/1d-xnys" in listed.output and "30 16 * * 1-5 (America/New_York)" in listed.output
    assert "work pool 'elsewhere'" in listed.output and "differs" not in listed.output
    registry = tmp_path / "assets.yaml"
    registry.write_text("assets:\n  - {symbol: ACME, timeframe: 1d, calendar: XLON}\n", encoding="utf-8")
    monkeypatch.setenv("FKS_ASSETS_FILE", str(registry))
    stale = CliRunner().invoke(app, ["deploy"])
    assert "ingest/1d-xlon" in stale.output and "17 * * 1-5 (Europe/London)" in stale.output
    assert "differs from the declarations: rewrite it with `fks deploy --write`" in " ".join(
        stale.output.split()
    )


def test_deployed_per_series_flows_run_their_tasks_on_the_configured_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows import deployed

    monkeypatch.setenv("FKS_TASK_RUNNER", "sequential")
    deployed.deployed_flow.cache_clear()
    try:
        runner = deployed.deployed_flow("ingest").task_runner
        assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1
        assert deployed.deployed_flow("retrain").task_runner._max_workers != 1  # not a per-series flow
    finally:
        deployed.deployed_flow.cache_clear()
