"""Smoke test of ``benchmarks/execution.py`` on a tiny workload: it runs, FKS and backtrader trade
the same orders, and their books agree."""

from __future__ import annotations

import pytest

pytest.importorskip("backtrader")


@pytest.mark.slow
def test_the_execution_benchmark_runs_and_the_books_agree(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.execution import main

    out = main(["--orders", "20", "--bars", "40", "--repeats", "1", "--no-postgres"])
    capsys.readouterr()
    assert out["postgresql"] is None
    for work in ("desk", "replay"):
        assert out[work]["agreement"]["agree"], out[work]["agreement"]
        assert out[work]["stores_agree"]
        assert out[work]["sqlite_file"]["orders"] == out[work]["backtrader"]["orders"] > 0
