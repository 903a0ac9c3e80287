"""CLI fixed overhead: what an ``fks`` command costs around its own work, with and without ``fks server``.

Run ``python -m benchmarks.cli_overhead``; options: ``--repeats K`` (default 3, the median is
reported). Prints one JSON object.

Each figure is the wall time of a real ``fks`` subprocess (``python -m flows.cli``), in a fresh
data directory and SQLite database, with ``PREFECT_HOME`` in a temporary folder (so no other
Prefect server or profile is used):

* ``no_flow_s``: ``fks data list``, a command that runs no flow and never imports Prefect.
* ``flow_*``: ``fks ingest --source csv`` of a 60-bar daily CSV (the first 60 rows of the shipped
  GOOGL sample, re-read in full each time with ``--full``), so the flow's own work is small.
  The flow run's own duration (``end_time - start_time`` of the flow run, read from the
  server's API after each command) is subtracted from the command's wall time: what remains is
  the command's **fixed overhead** (interpreter start, imports, creating the flow run, exit).

  - ``temporary_server``: no ``PREFECT_API_URL``: Prefect starts its temporary local server in
    the command and stops it at exit (the anchor: what every command paid before ``fks server``).
    Its run's duration is taken from the median of the ``running_server`` runs (same work; the
    temporary server is gone when the command ends). One untimed run first creates Prefect's
    database.
  - ``running_server``: after ``fks server start`` (timed too), every command finds the
    background server through ``<data_dir>/prefect/server.json``. Its overhead is also split at
    the flow run's start and end times (the server's clock is this machine's): ``before_run_s``
    from launching the process to the run starting (interpreter, imports, creating the run),
    ``after_run_s`` from the run's end to the process's exit (final state, the summary, exit).

``ratio`` is the temporary-server overhead divided by the running-server overhead (how many
times cheaper a flow command's fixed cost is with the server). The issue's target: the fixed
overhead with the server under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "googl_daily.csv"
ROWS = 60


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FKS_"))}
    env.update(
        {
            "FKS_DATA_DIR": str(work / "data"),
            "FKS_DB_URL": f"sqlite:///{work / 'fks.db'}",
            "FKS_MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns.db'}",
            "PREFECT_HOME": str(work / "prefect-home"),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _fks(args: Sequence[str], env: dict[str, str]) -> float:
    """Run ``fks ARGS`` and return its wall time in seconds; raise with its output if it fails."""
    return _fks_timed(args, env)[2]


def _fks_timed(args: Sequence[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``fks ARGS``: (launched, exited) as Unix times and the wall time in seconds."""
    launched, start = time.time(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fks {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return launched, launched + elapsed, elapsed


def _last_flow_run(api_url: str) -> tuple[float, float]:
    """(start, end) of the most recent flow run on the server at ``api_url``, as Unix times."""
    import httpx

    body = {"sort": "EXPECTED_START_TIME_DESC", "limit": 1}
    runs = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=30).json()
    run = runs[0]
    if run["state_type"] != "COMPLETED":
        raise RuntimeError(f"the last flow run ended {run['state_type']}, not COMPLETED")
    from datetime import datetime

    started = datetime.fromisoformat(run["start_time"])
    ended = datetime.fromisoformat(run["end_time"])
    return started.timestamp(), ended.timestamp()


def measure(repeats: int) -> dict[str, object]:
    """Time the commands (see the module docstring) and return the figures."""
    with tempfile.TemporaryDirectory(prefix="fks-cli-overhead-") as tmp:
        work = Path(tmp)
        csv = work / "tiny.csv"
        lines = SAMPLE.read_text().splitlines()[: ROWS + 1]
        csv.write_text("\n".join(lines) + "\n")
        env = _env(work)
        ingest = [
            "ingest",
            "--source",
            "csv",
            "--path",
            str(csv),
            "--symbols",
            "TINY",
            "--timeframe",
            "1d",
            "--full",
        ]

        _fks(ingest, env)  # creates the FKS and Prefect databases (untimed)
        no_flow = [_fks(["data", "list"], env) for _ in range(repeats)]
        temporary = [_fks(ingest, env) for _ in range(repeats)]

        server_start = _fks(["server", "start"], env)
        try:
            state = json.loads((work / "data" / "prefect" / "server.json").read_text())
            api_url = state["url"]
            running, run_seconds, before, after = [], [], [], []
            for _ in range(repeats):
                launched, exited, wall = _fks_timed(ingest, env)
                started, ended = _last_flow_run(api_url)
                running.append(wall)
                run_seconds.append(ended - started)
                before.append(started - launched)
                after.append(exited - ended)
        finally:
            server_stop = _fks(["server", "stop"], env)

    run_s = statistics.median(run_seconds)
    temp_wall, running_wall = statistics.median(temporary), statistics.median(running)
    temp_overhead, running_overhead = temp_wall - run_s, running_wall - run_s
    return {
        "benchmark": "cli_overhead",
        "repeats": repeats,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "no_flow_s": round(statistics.median(no_flow), 3),
        "flow_run_own_s": round(run_s, 3),
        "temporary_server": {"wall_s": round(temp_wall, 3), "overhead_s": round(temp_overhead, 3)},
        "running_server": {
            "wall_s": round(running_wall, 3),
            "overhead_s": round(running_overhead, 3),
            "before_run_s": round(statistics.median(before), 3),
            "after_run_s": round(statistics.median(after), 3),
        },
        "server_start_s": round(server_start, 3),
        "server_stop_s": round(server_stop, 3),
        "anchor": "the same command with Prefect's temporary server",
        "ratio": round(temp_overhead / running_overhead, 2),
        "target_met": running_overhead < 2.0,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, measure, print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.repeats)))


if __name__ == "__main__":
    main()
