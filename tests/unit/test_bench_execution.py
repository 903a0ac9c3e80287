"""``benchmarks/execution.py``: a smoke test on a tiny workload (it runs, FKS and backtrader trade
the same orders, and their books agree) and its cost split (per symbol-bar and per order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

pytest.importorskip("backtrader")


def _run(module: str, *options: str) -> dict[str, Any]:
    """The benchmark ``module`` run as a user runs it, in a process of its own (each timed run
    starts with a full gc.collect(), which in the test session's large heap costs seconds
    apiece): its JSON output."""
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", module, *options]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return cast(dict[str, Any], json.loads(done.stdout))


@pytest.mark.slow
def test_the_execution_benchmark_runs_and_the_books_agree() -> None:
    options = ("--orders", "20", "--bars", "40", "--repeats", "1", "--pairs", "2", "--no-postgres")
    out = _run("benchmarks.execution", *options)
    assert out["postgresql"] is None
    pairs = out["desk_pairs"]
    assert pairs["rounds"] == 2 and len(pairs["ratios"]) == 2 and all(r > 0 for r in pairs["ratios"])
    assert min(pairs["ratios"]) <= pairs["median"] <= max(pairs["ratios"])
    for work in ("desk", "replay", "bars"):
        assert out[work]["agreement"]["agree"], out[work]["agreement"]
        assert out[work]["stores_agree"]
        assert out[work]["sqlite_file"]["orders"] == out[work]["backtrader"]["orders"]
    assert out["desk"]["sqlite_file"]["orders"] > 0 and out["replay"]["sqlite_file"]["orders"] > 0
    assert out["bars"]["sqlite_file"]["orders"] == 0
    split = out["cost_split"]
    assert set(split) == {"backtrader", "sqlite_file", "sqlite_memory", "orders_per_symbol_bar"}
    for side in ("backtrader", "sqlite_file", "sqlite_memory"):
        assert split[side]["per_symbol_bar_us"] > 0
    assert split["orders_per_symbol_bar"]["desk"] == pytest.approx(20 / (3 * 10), rel=1e-3)


@pytest.mark.slow
def test_the_floor_writes_the_desk_s_rows_and_its_books_agree() -> None:
    # the same statements as the OMS (it stops if their bindings changed), the same rows and
    # audit details' keys, the same orders as FKS and backtrader, the same final cash
    # on the SQLite file, and on PostgreSQL (its statements pipelined) where the session has one
    postgres = bool(os.environ.get("TEST_POSTGRES_URL"))
    options = ("--orders", "20", "--repeats", "1", *(() if postgres else ("--no-postgres",)))
    out = _run("benchmarks.execution_floor", *options)
    assert out["backtrader"]["orders"] == 20
    stores = [out, out["postgresql"]] if postgres else [out]
    if not postgres:
        assert out["postgresql"] is None
    for store in stores:
        assert store["agreement"]["agree"] and store["agreement"]["same_rows"], store["agreement"]
        assert store["rows"]["floor"]["audit_log"]["order.transition"] == 3 * 20, store["rows"]
        assert store["rows"]["floor_objects"]["audit_keys"] == store["rows"]["fks"]["audit_keys"]
        for side in ("floor", "floor_no_risk", "floor_objects", "fks"):
            assert store[side]["orders"] == 20 and store[side]["s"] > 0
        assert set(store["ratio_to_backtrader"]) == {"floor", "floor_no_risk", "floor_objects", "fks"}
    if postgres:  # the same rows on both stores
        assert out["postgresql"]["rows"]["fks"] == out["rows"]["fks"]


@pytest.mark.parametrize("module", ["benchmarks.execution", "benchmarks.execution_floor"])
@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--orders", "15"], "positive multiple of 10"),
        (["--orders", "0"], "positive multiple of 10"),
        (["--repeats", "0"], "at least 1"),
    ],
)
def test_the_desk_benchmarks_refuse_bad_options_saying_why(
    module: str, options: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(options)
    assert exit_.value.code == 2 and why in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "why"),
    [(["--bars", "1"], "--bars must be at least 2"), (["--pairs", "0"], "--pairs must be at least 1")],
)
def test_the_execution_benchmark_refuses_fewer_than_two_bars_or_no_pairs(
    options: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.execution import main

    with pytest.raises(SystemExit) as exit_:
        main(options)
    assert exit_.value.code == 2 and why in capsys.readouterr().err


def test_per_unit_costs_price_the_bars_then_the_orders() -> None:
    from benchmarks.execution import per_unit_costs

    bars = {"seconds": 0.5, "symbol_bars": 1000, "orders": 0}
    desk = {"seconds": 0.3, "symbol_bars": 100, "orders": 50}
    per_bar, per_order = per_unit_costs(desk, bars)
    assert per_bar == pytest.approx(5e-4)
    assert per_order == pytest.approx((0.3 - 100 * 5e-4) / 50)
    with pytest.raises(ValueError, match="needs a bars run"):
        per_unit_costs({**desk, "orders": 0}, bars)


@pytest.mark.parametrize(
    ("fks", "anchor", "expected"),
    [
        ((4e-6, 150e-6), (32e-6, 80e-6), (0.4, "below")),  # cheaper bars, dearer orders
        ((40e-6, 50e-6), (30e-6, 80e-6), (1 / 3, "above")),  # dearer bars, cheaper orders
        ((4e-6, 50e-6), (32e-6, 80e-6), (None, "always")),
        ((40e-6, 90e-6), (32e-6, 80e-6), (None, "never")),
        ((4e-6, 80e-6), (32e-6, 80e-6), (None, "always")),  # the same per order
    ],
)
def test_break_even_is_where_both_sides_take_the_same_time(
    fks: tuple[float, float], anchor: tuple[float, float], expected: tuple[float | None, str]
) -> None:
    from benchmarks.execution import break_even

    found = break_even(fks, anchor)
    rate, faster = expected
    assert found["fks_faster"] == faster
    if rate is None:
        assert found["orders_per_symbol_bar"] is None
        return
    assert found["orders_per_symbol_bar"] == pytest.approx(rate)
    r = found["orders_per_symbol_bar"]
    assert fks[0] + r * fks[1] == pytest.approx(anchor[0] + r * anchor[1])  # equal times there
    nearer = r * (0.5 if faster == "below" else 2.0)  # on FKS's side of it, FKS is cheaper
    assert fks[0] + nearer * fks[1] < anchor[0] + nearer * anchor[1]
