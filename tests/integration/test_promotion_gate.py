"""The promotion gate: the decision table, the ``promotions`` table, and the registry on a real
MLflow store (SQLite + local artifacts) with a real FKS database (SQLite, and PostgreSQL when
``TEST_POSTGRES_URL`` is set).

One trivial pyfunc is logged once per module; each test registers versions of it under its own
model name, so no training happens and the tests stay independent.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from config.promotion import PromotionPolicy
from models.gate import CHECKS, Decision, GateInput, best_baseline, decide, improvement
from storage import list_promotions, make_engine, migrate, record_promotion
from storage.db import _alembic_config

WINDOW = ("2024-01-01", "2024-06-30")
GOOD = {"sharpe": 0.61, "max_drawdown": -0.18, "total_return": 0.12}
CHAMPION = {"sharpe": 0.42, "max_drawdown": -0.2, "total_return": 0.08}
BASELINE = {"sharpe": 0.30, "max_drawdown": -0.25, "total_return": 0.05}


def _inputs(**overrides: Any) -> GateInput:
    values: dict[str, Any] = {
        "challenger": GOOD,
        "champion": CHAMPION,
        "baseline_name": "buy_and_hold",
        "baseline": BASELINE,
        "window_start": WINDOW[0],
        "window_end": WINDOW[1],
        "data_validated": True,
        "n_trades": 42,
    }
    values.update(overrides)
    return GateInput(**values)


# --- the policy -----------------------------------------------------------------------------------


def test_policy_defaults_and_validation() -> None:
    policy = PromotionPolicy()
    assert policy.primary_metric == "sharpe"
    assert policy.min_margin_vs_champion == 0.05 and policy.min_margin_vs_baseline == 0.0
    assert policy.max_drawdown_floor == -0.35 and policy.min_trades == 10
    assert policy.require_validated_data is True
    with pytest.raises(ValidationError):
        policy.min_trades = 3  # frozen
    for bad in (
        {"min_margin_vs_champion": -0.1},
        {"min_margin_vs_baseline": math.nan},
        {"max_drawdown_floor": 0.2},
        {"max_drawdown_floor": -1.5},
        {"min_trades": -1},
        {"primary_metric": " "},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            PromotionPolicy(**bad)


# --- decide(): the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    overrides: dict[str, Any]
    promote: bool
    failed: list[str]
    policy: PromotionPolicy | None = None


def _ch(**metrics: float) -> dict[str, Any]:
    """The challenger's metrics: GOOD with ``metrics`` replaced."""
    return {"challenger": {**GOOD, **metrics}}


NO_MARGIN = PromotionPolicy(min_margin_vs_champion=0)
BASE_MARGIN = PromotionPolicy(min_margin_vs_baseline=0.1)
DD_PRIMARY = PromotionPolicy(primary_metric="max_drawdown", min_margin_vs_champion=0.05)
BOTH = ["champion", "baseline"]

CASES = [
    Case("better than champion and baseline", {}, True, []),
    Case("worse than champion", _ch(sharpe=0.40), False, ["champion"]),
    Case("better than champion by less than the margin", _ch(sharpe=0.45), False, ["champion"]),
    Case("ties champion, margin 0", _ch(sharpe=0.42), False, ["champion"], NO_MARGIN),
    Case("beats the champion exactly by the margin", _ch(sharpe=0.47), True, []),
    Case("beats champion only", {**_ch(sharpe=0.25), "champion": {"sharpe": 0.1}}, False, ["baseline"]),
    Case("baseline margin", {"baseline": {"sharpe": 0.58}}, False, ["baseline"], BASE_MARGIN),
    Case("drawdown worse than the floor", _ch(max_drawdown=-0.41), False, ["drawdown"]),
    Case("drawdown at the floor", _ch(max_drawdown=-0.35), True, []),
    Case("drawdown as a positive magnitude", _ch(max_drawdown=0.41), False, ["drawdown"]),
    Case("no drawdown metric", {"challenger": {"sharpe": 0.61}}, False, ["drawdown"]),
    Case("too few trades", {"n_trades": 7}, False, ["trades"]),
    Case("exactly the minimum trades", {"n_trades": 10}, True, []),
    Case("unvalidated data", {"data_validated": False}, False, ["data"]),
    Case("unvalidated data, not required", {"data_validated": False}, True, [],
         PromotionPolicy(require_validated_data=False)),
    Case("no champion yet", {"champion": None}, True, []),
    Case("no champion yet, loses to baseline", {**_ch(sharpe=0.2), "champion": None}, False, ["baseline"]),
    Case("challenger sharpe missing", {"challenger": {"max_drawdown": -0.1}}, False, BOTH),
    Case("challenger sharpe NaN", _ch(sharpe=math.nan), False, BOTH),
    Case("champion sharpe missing", {"champion": {"max_drawdown": -0.1}}, False, ["champion"]),
    Case("everything wrong", {**_ch(sharpe=0.1, max_drawdown=-0.5), "n_trades": 2, "data_validated": False},
         False, ["champion", "baseline", "drawdown", "trades", "data"]),
    Case("max_drawdown primary", _ch(max_drawdown=-0.12), True, [], DD_PRIMARY),
    Case("max_drawdown primary, too little gain", _ch(max_drawdown=-0.17), False, ["champion"], DD_PRIMARY),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide_table(case: Case) -> None:
    decision = decide(_inputs(**case.overrides), case.policy or PromotionPolicy())
    assert decision.promote is case.promote
    assert decision.forced is False
    assert decision.failed_checks == case.failed
    assert set(decision.checks) == set(CHECKS)
    assert decision.outcome == ("promoted" if case.promote else "refused")
    assert decision.reasons and all(isinstance(r, str) and r for r in decision.reasons)
    # refused: one sentence per failed check; promoted: one per passed check
    assert len(decision.reasons) == (len(CHECKS) if case.promote else len(case.failed))
    json.dumps(decision.metrics)  # JSON-ready (NaN inputs only inside the raw metric dicts)


def test_reasons_read_as_sentences() -> None:
    decision = decide(_inputs(), PromotionPolicy())
    assert decision.reasons == [
        "Sharpe 0.61 beats champion 0.42 by 0.19 >= margin 0.05",
        "Sharpe 0.61 beats baseline 'buy_and_hold' 0.3 by 0.31 >= margin 0",
        "Max drawdown -18.0% is within the floor -35.0%",
        "42 trades >= minimum 10",
        "Backtest data 2024-01-01T00:00:00+00:00 to 2024-06-30T00:00:00+00:00 passed validation",
    ]
    refused = decide(
        _inputs(challenger={"sharpe": 0.40, "max_drawdown": -0.41}, n_trades=3, data_validated=False)
    )
    assert refused.reasons == [
        "Sharpe 0.4 does not beat champion 0.42 by margin 0.05: improvement -0.02",
        "Max drawdown -41.0% is worse than the floor -35.0%",
        "3 trades < minimum 10: too few for the metrics to be trusted",
        "Backtest data 2024-01-01T00:00:00+00:00 to 2024-06-30T00:00:00+00:00 has not passed validation; "
        "the policy requires validated data",
    ]
    first = decide(_inputs(champion=None))
    assert first.reasons[0].startswith("No champion yet")


def test_force_promotes_and_keeps_the_reasons_it_would_have_refused_for() -> None:
    inputs = _inputs(challenger={**GOOD, "sharpe": 0.40}, n_trades=3)
    refused = decide(inputs)
    forced = decide(inputs, force=True)
    assert (forced.promote, forced.forced, forced.outcome) == (True, True, "forced")
    assert forced.failed_checks == ["champion", "trades"] == refused.failed_checks
    assert forced.reasons == ["Promotion forced over 2 failed check(s)", *refused.reasons]
    clean = decide(_inputs(), force=True)
    assert clean.forced and clean.reasons[0] == "Promotion forced; every check passed anyway"


def test_decision_metrics_snapshot() -> None:
    decision = decide(_inputs(), PromotionPolicy())
    m = decision.metrics
    assert m["primary_metric"] == "sharpe"
    assert (m["challenger_value"], m["champion_value"], m["baseline_value"]) == (0.61, 0.42, 0.30)
    assert m["baseline_name"] == "buy_and_hold"
    assert m["improvement_vs_champion"] == pytest.approx(0.19)
    assert m["improvement_vs_baseline"] == pytest.approx(0.31)
    assert m["n_trades"] == 42 and m["data_validated"] is True and m["max_drawdown"] == -0.18
    assert m["window_start"] == "2024-01-01T00:00:00+00:00"
    assert m["challenger"] == GOOD and m["champion"] == CHAMPION and m["baseline"] == BASELINE
    assert m["checks"] == dict.fromkeys(CHECKS, True)
    assert m["policy"] == PromotionPolicy().model_dump()
    with pytest.raises(FrozenInstanceError):
        decision.promote = False  # type: ignore[misc]


def test_improvement_direction() -> None:
    assert improvement("sharpe", 0.61, 0.42) == pytest.approx(0.19)
    assert improvement("max_drawdown", -0.12, -0.20) == pytest.approx(0.08)
    assert improvement("max_drawdown", 0.12, -0.20) == pytest.approx(0.08)  # by magnitude
    assert improvement("max_drawdown", -0.30, -0.20) == pytest.approx(-0.10)


def test_best_baseline_follows_the_metric_direction() -> None:
    baselines = {
        "zero": {"sharpe": 0.0, "max_drawdown": -0.05},
        "buy_and_hold": {"sharpe": 0.3, "max_drawdown": -0.3},
        "broken": {"sharpe": math.nan, "max_drawdown": math.nan},
    }
    assert best_baseline(baselines, "sharpe") == ("buy_and_hold", baselines["buy_and_hold"])
    assert best_baseline(baselines, "max_drawdown")[0] == "zero"
    with pytest.raises(ValueError, match="at least one"):
        best_baseline({}, "sharpe")
    with pytest.raises(ValueError, match="no baseline has a finite 'sortino'"):
        best_baseline(baselines, "sortino")


def test_gate_input_validation() -> None:
    inputs = _inputs(window_start=pd.Timestamp("2024-01-01 09:30", tz="America/New_York"))
    assert inputs.window_start == pd.Timestamp("2024-01-01 14:30", tz="UTC")
    assert inputs.window_end.tzinfo is not None
    source = dict(GOOD)
    copied = _inputs(challenger=source)
    source["sharpe"] = -1.0
    assert copied.challenger["sharpe"] == 0.61
    with pytest.raises(ValueError, match="before window_start"):
        _inputs(window_start="2024-07-01")
    with pytest.raises(ValueError, match="not a timestamp"):
        _inputs(window_end="not a date")
    with pytest.raises(ValueError, match="n_trades must not be negative"):
        _inputs(n_trades=-1)
    with pytest.raises(TypeError, match="n_trades must be an int"):
        _inputs(n_trades=4.0)
    with pytest.raises(TypeError, match="data_validated must be a bool"):
        _inputs(data_validated="yes")
    with pytest.raises(ValueError, match="baseline_name"):
        _inputs(baseline_name="")
    with pytest.raises(TypeError, match="challenger must be a mapping"):
        _inputs(challenger=[0.61])


# --- the promotions table -------------------------------------------------------------------------


def test_record_and_list_promotions(engine: Engine) -> None:
    decision = decide(_inputs())
    with engine.begin() as conn:
        first = record_promotion(
            conn,
            model_name="fks-forecaster",
            challenger_version="3",
            champion_version=2,
            decision=decision.outcome,
            primary_metric="sharpe",
            challenger_value=0.61,
            champion_value=0.42,
            baseline_name="buy_and_hold",
            baseline_value=math.nan,
            window_start=WINDOW[0],
            window_end=pd.Timestamp(WINDOW[1], tz="UTC"),
            reasons=decision.reasons,
            metrics={**decision.metrics, "odd": math.inf},
            actor="ci",
        )
        second = record_promotion(
            conn, model_name="fks-allocator", challenger_version="1", decision="rolled_back", actor="alice"
        )
    with engine.connect() as conn:
        everything = list_promotions(conn)
        forecaster = list_promotions(conn, "fks-forecaster")
        assert list_promotions(conn, model_name="nothing") == []
    assert [r.id for r in everything] == [first, second]
    assert [r.id for r in forecaster] == [first]
    row = forecaster[0]
    assert (row.model_name, row.challenger_version, row.champion_version) == ("fks-forecaster", "3", "2")
    assert (row.decision, row.primary_metric, row.actor) == ("promoted", "sharpe", "ci")
    assert (row.challenger_value, row.champion_value, row.baseline_value) == (0.61, 0.42, None)
    assert row.baseline_name == "buy_and_hold"
    assert row.window_start == pd.Timestamp(WINDOW[0], tz="UTC")
    assert row.window_end == pd.Timestamp(WINDOW[1], tz="UTC")
    assert row.reasons == decision.reasons
    assert row.metrics["odd"] == "inf" and row.metrics["checks"] == dict.fromkeys(CHECKS, True)
    assert abs(row.decided_at - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=5)
    rollback_row = everything[1]
    assert rollback_row.decision == "rolled_back" and rollback_row.champion_version is None
    assert rollback_row.window_start is None and rollback_row.reasons == [] and rollback_row.metrics == {}


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"decision": "maybe"}, ValueError, "decision 'maybe' is not one of"),
        ({"model_name": " "}, ValueError, "model_name"),
        ({"actor": ""}, ValueError, "actor"),
        ({"actor": "x" * 129}, ValueError, "at most 128"),
        ({"challenger_version": ""}, ValueError, "challenger_version"),
        ({"challenger_version": 1.5}, TypeError, "challenger_version"),
        ({"primary_metric": None}, ValueError, "primary_metric"),
        ({"baseline_name": None}, ValueError, "baseline_name"),
        ({"window_end": None}, ValueError, "backtest window"),
        ({"window_end": "2023-01-01"}, ValueError, "before window_start"),
        ({"window_start": "soon"}, ValueError, "not a timestamp"),
        ({"reasons": []}, ValueError, "at least one reason"),
        ({"reasons": "because"}, TypeError, "list of strings"),
        ({"reasons": ["ok", ""]}, ValueError, "empty"),
        ({"reasons": ["ok", 3]}, TypeError, "every reason"),
        ({"metrics": [1]}, TypeError, "metrics must be a mapping"),
        ({"challenger_value": "0.6"}, TypeError, "challenger_value"),
        ({"champion_value": True}, TypeError, "champion_value"),
    ],
)
def test_record_promotion_rejects_bad_input(
    engine: Engine, overrides: dict[str, Any], error: type[Exception], match: str
) -> None:
    values: dict[str, Any] = {
        "model_name": "fks-forecaster",
        "challenger_version": "2",
        "decision": "refused",
        "actor": "ci",
        "primary_metric": "sharpe",
        "baseline_name": "buy_and_hold",
        "window_start": WINDOW[0],
        "window_end": WINDOW[1],
        "reasons": ["Sharpe 0.4 does not beat champion 0.42 by margin 0.05: improvement -0.02"],
    }
    values.update(overrides)
    with engine.begin() as conn:
        with pytest.raises(error, match=match):
            record_promotion(conn, **values)
        assert list_promotions(conn) == []


def test_the_database_checks_the_decision(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO promotions (model_name, challenger_version, decision, reasons, metrics, actor,"
                " decided_at) VALUES ('m', '1', 'maybe', '[]', '{}', 'ci', 0)"
            )
        )


def test_migration_0004_adds_and_drops_promotions(url: str) -> None:
    from alembic import command

    eng = make_engine(url)
    try:
        config = _alembic_config()
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
        assert "promotions" not in inspect(eng).get_table_names()
        migrate(eng)
        assert "promotions" in inspect(eng).get_table_names()
        indexes = {i["name"]: i["column_names"] for i in inspect(eng).get_indexes("promotions")}
        assert indexes["ix_promotions_model_name"] == ["model_name"]
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0003")
        assert "promotions" not in inspect(eng).get_table_names()
        migrate(eng)
        assert "promotions" in inspect(eng).get_table_names()
    finally:
        eng.dispose()


# --- the registry on a real MLflow store ----------------------------------------------------------


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """Use MLflow store ``uri`` inside the block; restore the URI (and its env variable) after."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    global_uri, env_uri = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(global_uri)  # type: ignore[arg-type]  # None: back to the default
        if env_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_uri


@pytest.fixture(scope="module")
def logged_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(tracking URI, model URI)`` of one trivial pyfunc logged in a fresh SQLite MLflow store."""
    import mlflow
    from mlflow.pyfunc import PythonModel

    class Constant(PythonModel):
        def predict(self, context: Any, model_input: list[float], params: Any = None) -> list[float]:
            return [0.0 for _ in model_input]

    root: Path = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with _tracking(tracking_uri):
        experiment_id = mlflow.create_experiment("gate", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.pyfunc.log_model(name="constant", python_model=Constant())
    yield tracking_uri, info.model_uri


@pytest.fixture
def model_name(logged_model: tuple[str, str]) -> Iterator[str]:
    """A registered-model name of this test's own, with MLflow pointed at the module's store."""
    with _tracking(logged_model[0]):
        yield f"gate-{uuid.uuid4().hex[:10]}"


def _register(logged_model: tuple[str, str], name: str) -> str:
    from models.registry import register

    return register(logged_model[1], name)


def _alias(name: str, alias: str) -> str | None:
    from models.registry import get_version_by_alias

    mv = get_version_by_alias(name, alias)
    return None if mv is None else str(mv.version)


def _tags(name: str, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient().get_model_version(name, version).tags)


def _record(
    conn: Any, name: str, version: str, champion: str | None, decision: Decision, actor: str = "ci"
) -> int:
    m = decision.metrics
    return record_promotion(
        conn,
        model_name=name,
        challenger_version=version,
        champion_version=champion,
        decision=decision.outcome,
        primary_metric=m["primary_metric"],
        challenger_value=m["challenger_value"],
        champion_value=m["champion_value"],
        baseline_name=m["baseline_name"],
        baseline_value=m["baseline_value"],
        window_start=m["window_start"],
        window_end=m["window_end"],
        reasons=decision.reasons,
        metrics=m,
        actor=actor,
    )


def test_apply_decision_moves_aliases_only_when_promoted_and_tags_every_decision(
    logged_model: tuple[str, str], model_name: str
) -> None:
    from models.registry import CHALLENGER, apply_decision, set_alias

    v1 = _register(logged_model, model_name)
    first = decide(_inputs(champion=None))
    assert apply_decision(model_name, first, challenger_version=v1, reason_tags={"actor": "ci"}) == v1
    assert _alias(model_name, "champion") == v1
    assert _alias(model_name, "challenger") is None and _alias(model_name, "previous-champion") is None
    tags = _tags(model_name, v1)
    assert tags["gate_decision"] == "promoted" and tags["gate_forced"] == "false"
    assert tags["gate_reasons"] == " | ".join(first.reasons)
    assert json.loads(tags["gate_metrics"])["challenger_value"] == 0.61
    assert pd.Timestamp(tags["gate_time"]).tzinfo is not None
    assert tags["actor"] == "ci"
    assert tags["promotion_reason"] == " | ".join(first.reasons) and tags["replaced_version"] == ""

    v2 = _register(logged_model, model_name)
    set_alias(model_name, CHALLENGER, v2)
    worse = decide(_inputs(challenger={**GOOD, "sharpe": 0.30, "max_drawdown": math.nan}))
    assert apply_decision(model_name, worse, challenger_version=v2, reason_tags={}) is None
    assert _alias(model_name, "champion") == v1 and _alias(model_name, "challenger") == v2
    tags = _tags(model_name, v2)
    assert tags["gate_decision"] == "refused" and tags["gate_forced"] == "false"
    assert "does not beat champion" in tags["gate_reasons"]
    assert json.loads(tags["gate_metrics"])["challenger"]["max_drawdown"] == "nan"  # strict JSON
    assert "promotion_reason" not in tags and "promoted_at" not in tags

    forced = decide(_inputs(challenger={**GOOD, "sharpe": 0.35}), force=True)
    assert apply_decision(model_name, forced, challenger_version=v2, reason_tags={}) == v2
    assert _alias(model_name, "champion") == v2 and _alias(model_name, "previous-champion") == v1
    tags = _tags(model_name, v2)
    assert tags["gate_decision"] == "forced" and tags["gate_forced"] == "true"
    assert tags["promotion_reason"].startswith("forced: Promotion forced over 1 failed check(s)")
    assert tags["replaced_version"] == v1


def test_apply_decision_refuses_bad_calls_before_changing_anything(
    logged_model: tuple[str, str], model_name: str
) -> None:
    from mlflow.exceptions import MlflowException

    from models.registry import apply_decision

    v1 = _register(logged_model, model_name)
    decision = decide(_inputs(champion=None))
    with pytest.raises(ValueError, match="gate's own tags"):
        apply_decision(model_name, decision, challenger_version=v1, reason_tags={"gate_decision": "x"})
    with pytest.raises(MlflowException):
        apply_decision(model_name, decision, challenger_version="99", reason_tags={})
    assert _alias(model_name, "champion") is None and "gate_decision" not in _tags(model_name, v1)
    apply_decision(model_name, decision, challenger_version=v1, reason_tags={})
    with pytest.raises(ValueError, match="already 'champion'"):
        apply_decision(model_name, decision, challenger_version=v1, reason_tags={})
    assert _alias(model_name, "champion") == v1 and _alias(model_name, "challenger") is None


def test_the_gate_story_in_the_registry_and_the_promotions_table(
    logged_model: tuple[str, str], model_name: str, engine: Engine
) -> None:
    """First champion, a worse challenger refused, a better one promoted, a rollback, in order."""
    from models.registry import CHALLENGER, apply_decision, rollback, set_alias

    policy = PromotionPolicy()
    story: list[tuple[str, str, str | None]] = []

    # 1. the first model: no champion yet, beats the baseline
    v1 = _register(logged_model, model_name)
    set_alias(model_name, CHALLENGER, v1)
    d1 = decide(_inputs(champion=None, challenger=CHAMPION), policy)
    assert apply_decision(model_name, d1, challenger_version=v1, reason_tags={}) == v1
    with engine.begin() as conn:
        _record(conn, model_name, v1, None, d1)
    story.append(("promoted", v1, None))

    # 2. a worse challenger is refused and the champion stays
    v2 = _register(logged_model, model_name)
    set_alias(model_name, CHALLENGER, v2)
    d2 = decide(_inputs(challenger={**GOOD, "sharpe": 0.40}, champion=CHAMPION), policy)
    assert not d2.promote and d2.failed_checks == ["champion"]
    assert apply_decision(model_name, d2, challenger_version=v2, reason_tags={}) is None
    assert _alias(model_name, "champion") == v1
    with engine.begin() as conn:
        _record(conn, model_name, v2, v1, d2)
    story.append(("refused", v2, v1))

    # 3. a better one is promoted; the old champion is kept as previous-champion
    v3 = _register(logged_model, model_name)
    set_alias(model_name, CHALLENGER, v3)
    d3 = decide(_inputs(challenger=GOOD, champion=CHAMPION), policy)
    assert apply_decision(model_name, d3, challenger_version=v3, reason_tags={}) == v3
    assert _alias(model_name, "champion") == v3 and _alias(model_name, "previous-champion") == v1
    assert _alias(model_name, "challenger") is None
    with engine.begin() as conn:
        _record(conn, model_name, v3, v1, d3)
    story.append(("promoted", v3, v1))

    # 4. rollback restores the previous champion
    assert rollback(model_name, reason="live Sharpe fell below the backtest") == v1
    assert _alias(model_name, "champion") == v1 and _alias(model_name, "previous-champion") is None
    assert _tags(model_name, v3)["rollback_reason"] == "live Sharpe fell below the backtest"
    with engine.begin() as conn:
        record_promotion(
            conn,
            model_name=model_name,
            challenger_version=v1,
            champion_version=v3,
            decision="rolled_back",
            reasons=["live Sharpe fell below the backtest"],
            actor="alice",
        )
    story.append(("rolled_back", v1, v3))

    with engine.connect() as conn:
        rows = list_promotions(conn, model_name)
    assert [(r.decision, r.challenger_version, r.champion_version) for r in rows] == story
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert [r.decided_at for r in rows] == sorted(r.decided_at for r in rows)
    assert (
        rows[1].reasons == d2.reasons and rows[1].challenger_value == 0.40 and rows[1].champion_value == 0.42
    )
    assert rows[2].metrics["improvement_vs_champion"] == pytest.approx(0.19)
    assert rows[3].actor == "alice" and rows[3].primary_metric is None
    # every gate decision is on its version in the registry too
    assert [_tags(model_name, v)["gate_decision"] for v in (v1, v2, v3)] == [
        "promoted",
        "refused",
        "promoted",
    ]


# --- the gate task on a real MLflow store and FKS database: window and baselines ---------------


def _momentum_pyfunc() -> Any:
    """A pyfunc that serves like the forecaster: raw bars in, the last bar's log return as forecast."""
    import numpy as np
    from mlflow.pyfunc import PythonModel

    class Momentum(PythonModel):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> pd.DataFrame:
            rows = []
            for _, bars in model_input.groupby("symbol", sort=False):
                close = bars["close"].to_numpy(dtype="float64")
                forecast = float(np.log(close[-1] / close[-2])) if len(close) > 1 else 0.0
                rows.append({"ts": bars["ts"].iloc[-1], "forecast_log_return": forecast, "prob_up": 0.5})
            return pd.DataFrame(rows)

    return Momentum()


GATE_BARS = pd.date_range("2024-01-01", periods=300, freq="D", tz="UTC", name="ts")  # .. 2024-10-26
GATE_TEST = ("2024-07-15T00:00:00+00:00", "2024-10-20T00:00:00+00:00")


@dataclass
class GateWorld:
    """An MLflow store with one experiment, a database with 300 daily bars of GATE, and helpers."""

    settings: Any
    experiment_id: str
    model: str

    def version(
        self,
        *,
        val_end: str = "2024-06-30T00:00:00+00:00",
        symbol: str = "GATE",
        predictions: pd.DataFrame | None = None,
        alias: str = "challenger",
    ) -> tuple[str, str]:
        """Log a run as ``fks train forecaster`` does (params, predictions), register it, alias it."""
        import mlflow

        from models.registry import register, set_alias

        with mlflow.start_run(experiment_id=self.experiment_id) as run:
            mlflow.log_params(
                {
                    "symbol": symbol,
                    "timeframe": "1d",
                    "horizon": "1",
                    "data.train_start": "2024-01-10T00:00:00+00:00",
                    "data.val_end": val_end,
                    "data.test_start": GATE_TEST[0],
                    "data.test_end": GATE_TEST[1],
                }
            )
            if predictions is not None:
                folder = Path(self.settings.data_dir) / run.info.run_id
                folder.mkdir(parents=True)
                predictions.to_csv(folder / "test_predictions.csv")
                mlflow.log_artifact(str(folder / "test_predictions.csv"), "predictions")
            info = mlflow.pyfunc.log_model(name="model", python_model=_momentum_pyfunc())
        version = register(info.model_uri, self.model)
        set_alias(self.model, alias, version)
        return version, run.info.run_id

    def gate(self, **config: Any) -> Any:
        from config.backtest import PromoteConfig
        from tasks.promote import gate_model

        settings = {"backtest": {"history": 5}, "policy": {"min_window_bars": 20}, **config}
        return gate_model.fn(PromoteConfig(model=self.model, **settings), self.settings)


@pytest.fixture
def world(settings: Any) -> Iterator[GateWorld]:
    import mlflow
    import numpy as np

    from config.assets import AssetClass, AssetSpec
    from storage import register_asset, upsert_bars
    from tasks.store import store_for

    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, len(GATE_BARS))))
    bars = pd.DataFrame(
        {"open": close, "high": close * 1.005, "low": close * 0.995, "close": close, "volume": 1e6},
        index=GATE_BARS,
    )
    bars["open"] = bars["close"].shift(1).fillna(bars["close"].iloc[0])
    bars["high"] = bars[["open", "close"]].max(axis=1) * 1.002
    bars["low"] = bars[["open", "close"]].min(axis=1) * 0.998
    with store_for(settings).begin() as conn:
        register_asset(conn, AssetSpec(symbol="GATE", asset_class=AssetClass.CRYPTO, calendar="24/7"))
        upsert_bars(conn, "GATE", "1d", bars, source="test")
    with _tracking(settings.mlflow_tracking_uri):
        root = Path(settings.data_dir) / "mlflow-artifacts"
        experiment_id = mlflow.create_experiment("gate-task", artifact_location=root.as_uri())
        yield GateWorld(settings=settings, experiment_id=experiment_id, model="gate-task")


def _predictions(**columns: Any) -> pd.DataFrame:
    """Logged test predictions over the test window: ``actual``, ``lstm`` and the given columns."""
    index = pd.date_range(GATE_TEST[0], GATE_TEST[1], freq="D", name="ts")
    frame = pd.DataFrame({"actual": 0.001, "lstm": 0.001}, index=index)
    for name, value in columns.items():
        frame[name] = value
    return frame


def test_gate_refuses_when_a_configured_baseline_cannot_be_evaluated(world: GateWorld) -> None:
    from storage import list_promotions
    from tasks.store import store_for

    version, run_id = world.version(predictions=None)  # the training run logged no predictions
    refused = world.gate()
    assert refused.outcome == "refused" and not refused.promoted
    assert set(refused.baseline_problems) == {"last_return", "ridge", "hist_gb"}
    assert refused.baseline_name == "buy and hold"  # still compared with what could be evaluated
    missing = f"training run {run_id} logged no predictions/test_predictions.csv"
    baseline_reason = next(r for r in refused.reasons if r.startswith("Baseline '"))
    for name in ("last_return", "ridge", "hist_gb"):
        assert f"Baseline '{name}' could not be evaluated: {missing}" in baseline_reason
    assert "fks train forecaster" in baseline_reason
    assert _tags(world.model, version)["gate_decision"] == "refused"
    with store_for(world.settings).connect() as conn:
        row = list_promotions(conn, world.model)[-1]
    assert row.decision == "refused" and row.metrics["checks"]["baseline"] is False
    assert row.metrics["baseline_problems"]["ridge"].startswith(missing)

    # only the baselines that are configured count: buy and hold alone can always be evaluated
    hold_only = world.gate(baselines=["buy and hold"], policy={"min_window_bars": 20, "min_trades": 10**6})
    assert hold_only.baseline_problems == {} and hold_only.baseline_name == "buy and hold"
    assert not any("could not be evaluated" in r for r in hold_only.reasons)

    # logged predictions without a configured column, or with no forecast in the window
    world.version(predictions=_predictions(ridge=0.002, last_return=float("nan")))
    partial = world.gate()
    assert partial.outcome == "refused" and set(partial.baseline_problems) == {"last_return", "hist_gb"}
    assert "no 'hist_gb' column" in partial.baseline_problems["hist_gb"]
    assert "cover none of the 98 bars" in partial.baseline_problems["last_return"]
    reason = next(r for r in partial.reasons if r.startswith("Baseline '"))
    assert "Baseline 'hist_gb' could not be evaluated" in reason
    assert "Baseline 'last_return' could not be evaluated" in reason and "'ridge' could not" not in reason
    # forced anyway: promoted, and the record keeps what would have refused it
    forced = world.gate(force=True)
    assert forced.outcome == "forced" and any("Baseline 'hist_gb'" in r for r in forced.reasons)


def test_gate_compares_on_the_window_out_of_sample_for_both(world: GateWorld) -> None:
    complete = _predictions(last_return=0.002, ridge=0.002, hist_gb=-0.002)
    champion, _ = world.version(val_end="2024-08-31T00:00:00+00:00", predictions=complete, alias="champion")
    world.version(predictions=complete)
    narrowed = world.gate()
    assert narrowed.champion_version == champion and narrowed.champion_value is not None
    assert narrowed.window == "2024-09-01 .. 2024-10-20"
    assert narrowed.window_bars == 50 and narrowed.window_narrowed
    assert narrowed.baseline_problems == {}
    # the same pyfunc on the same window: a tie, refused, and the reason says which window
    champion_reason = next(r for r in narrowed.reasons if "champion" in r)
    assert "does not beat champion" in champion_reason
    assert "narrowed from the test window 2024-07-15..2024-10-20" in champion_reason
    assert "champion v1 was trained and validated up to 2024-08-31" in champion_reason

    too_late, _ = world.version(val_end="2024-10-15T00:00:00+00:00", predictions=complete, alias="champion")
    too_short = world.gate()
    assert too_short.champion_version == too_late and too_short.champion_value is None
    assert too_short.window == "2024-07-15 .. 2024-10-20" and not too_short.window_narrowed
    assert any(r.startswith("Only 5 bars (2024-10-16..2024-10-20)") for r in too_short.reasons)

    elsewhere, _ = world.version(symbol="OTHER", predictions=complete, alias="champion")
    other = world.gate()
    assert other.outcome == "refused" and other.champion_version == elsewhere
    assert any(r.startswith(f"Champion v{elsewhere} is on OTHER 1d") for r in other.reasons)


# --- evidence: one report folder per backtest run, linked from the promotion record ---------------


def test_backtests_keep_their_own_folders_and_the_record_links_the_gates(world: GateWorld) -> None:
    from backtest.evaluate import run_backtest
    from config.backtest import BacktestConfig
    from storage import list_promotions
    from tasks.store import store_for

    complete = _predictions(last_return=0.002, ridge=0.002, hist_gb=-0.002)
    version, _ = world.version(predictions=complete)
    engine = store_for(world.settings)
    model = f"{world.model}@challenger"
    flat = run_backtest(BacktestConfig(model=model, history=5), world.settings, engine=engine)
    short = run_backtest(
        BacktestConfig(model=model, history=5, strategy="long_short"), world.settings, engine=engine
    )
    flat_page, short_page = Path(flat.tearsheet), Path(short.tearsheet)
    parent = Path(world.settings.data_dir) / "reports" / "backtests" / f"{world.model}-v{version}"
    assert flat_page.parent.parent == parent == short_page.parent.parent
    assert flat_page.parent.name.startswith("long_flat-") and short_page.parent.name.startswith("long_short-")
    flat_html = flat_page.read_text(encoding="utf-8")  # the first run's report is intact
    assert "(long_flat)" in flat_html and "(long_short)" not in flat_html
    assert "(long_short)" in short_page.read_text(encoding="utf-8")
    # the trades table names the series' symbol, not the forecast column
    trades = flat_html[flat_html.index('class="dataframe trades"') :]
    trades = trades[: trades.index("</table>")]
    assert "<td>GATE</td>" in trades and "forecast_log_return" not in trades

    summary = world.gate(baselines=["buy and hold"])
    assert summary.tearsheet is not None
    evidence = Path(summary.tearsheet)
    assert evidence.is_file() and evidence.parent.parent == parent
    assert evidence.parent.name.startswith("gate-long_flat-")
    page = evidence.read_text(encoding="utf-8")
    assert f"{world.model} v{version} (challenger)" in page and "buy and hold" in page
    assert "<td>GATE</td>" in page
    decision = json.loads((evidence.parent / "decision.json").read_text(encoding="utf-8"))
    assert decision["outcome"] == summary.outcome and decision["tearsheet"] == summary.tearsheet
    with engine.connect() as conn:
        row = list_promotions(conn, world.model)[-1]
    assert row.id == summary.promotion_id and row.tearsheet == summary.tearsheet
    # a later backtest of the same version leaves the gate's evidence alone
    before = evidence.read_bytes()
    run_backtest(BacktestConfig(model=model, history=5), world.settings, engine=engine)
    assert evidence.read_bytes() == before and flat_page.read_text(encoding="utf-8") == flat_html
    assert len(list(parent.iterdir())) == 4


def test_migration_0011_adds_the_tearsheet_link_and_keeps_rows(url: str) -> None:
    from alembic import command

    eng = make_engine(url)
    try:
        config = _alembic_config()
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0010")
            conn.execute(
                text(
                    "INSERT INTO promotions (model_name, challenger_version, decision, reasons, metrics,"
                    " actor, decided_at) VALUES ('m', '1', 'rolled_back', '[]', '{}', 'ci', 0)"
                )
            )
        assert "tearsheet" not in {c["name"] for c in inspect(eng).get_columns("promotions")}
        migrate(eng)
        assert "tearsheet" in {c["name"] for c in inspect(eng).get_columns("promotions")}
        with eng.begin() as conn:
            (old,) = list_promotions(conn, "m")
            assert old.tearsheet is None
            record_promotion(
                conn, model_name="m", challenger_version="2", decision="rolled_back", actor="ci",
                tearsheet="data/reports/backtests/m-v2/gate-long_flat-20260101T000000-0123abcd/tearsheet.html",
            )  # fmt: skip
            assert list_promotions(conn, "m")[-1].tearsheet.endswith("0123abcd/tearsheet.html")  # type: ignore[union-attr]
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")
        assert "tearsheet" not in {c["name"] for c in inspect(eng).get_columns("promotions")}
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM promotions")).scalar_one() == 2
        indexes = {i["name"] for i in inspect(eng).get_indexes("promotions")}
        assert "ix_promotions_model_name" in indexes
        migrate(eng)
    finally:
        eng.dispose()
