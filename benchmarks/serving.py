"""Serving benchmark: FKS's REST service against ``mlflow models serve``, same model, same load.

Run ``python -m benchmarks.serving``; options: ``--seconds S`` (timed load per server, default
20), ``--rounds R`` (turns per server the ``S`` seconds are split into, default 4),
``--curve-seconds C`` (per batch-size setting, default 8), ``--clients N`` (default 16),
``--payloads P`` (distinct request bodies, default 1024), ``--workers W`` (server processes of
both servers; default: each server's own default, 1 for both), ``--quick`` (a smoke run: 3 s per
server in one round, a curve of 2 points). Prints one JSON object; progress goes to stderr.

The model. One forecaster is logged and registered in a temporary MLflow store (SQLite, artifacts
in the same temporary folder, everything removed at the end), with the pipeline's shape: the
``default`` feature set, ``ForecasterConfig(symbol="SPX")`` (lookback 30, units (32,), horizon
1), a :class:`models.preprocessing.FeatureScaler` fitted on the first 2,500 SPX rows of
``data/samples/sp500_daily.csv`` and seeded, *untrained* weights (this times serving, not
accuracy: an untrained network costs the same per forward pass). It becomes version 1 with
alias ``champion``.

The servers, each its own process tree on 127.0.0.1:

* ``mlflow``: ``python -m mlflow models serve -m models:/fks-forecaster@champion --env-manager
  local``. Its worker count, read from MLflow 3's source: ``--workers`` / ``MLFLOW_MODELS_WORKERS``
  default to None, ``PyFuncBackend`` turns that into ``workers or 1`` and runs
  ``uvicorn --workers 1 mlflow.pyfunc.scoring_server.app:app`` as a child of the CLI process.
  ``POST /invocations`` with ``{"dataframe_split": {"columns": [ts, open, high, low, close,
  volume], "data": [...]}}`` (``ts`` as ISO 8601 strings; the signature takes ``ts`` and the prices
  as "any", ``symbol`` optional); each request runs ``PyFuncModel.predict`` (schema check, the
  pyfunc's windows and Keras ``model.predict``) on a worker thread.
* ``fks``: ``python -m serving --workers W`` (uvicorn over :func:`serving.app.app_from_env`,
  1 worker by default) with ``FKS_SERVE_AUTH=false`` (loopback), ``FKS_MLFLOW_TRACKING_URI``,
  ``FKS_DB_URL`` and ``FKS_DATA_DIR`` in the temporary folder, every other setting at its
  default (``FKS_*`` variables of the calling shell are not passed on). ``POST /v1/forecast``
  with ``{"model": "fks-forecaster", "series": [{"symbol": "SPX", "bars": [...]}]}``.

Payloads. ``P`` different 800-bar SPX stretches (start offsets spread evenly over the file),
the same stretches for both servers, each request body serialised to bytes before any clock
starts. Each client walks its own part of the list and goes on where it stopped in its last
turn, so a body comes back only after about ``P`` other requests: with ``P`` above the service's
feature-cache size (``serve_feature_cache``, an LRU keyed by the bars' checksum) no answer can
come from that cache (its hit and miss counters from ``/metrics`` are reported). Before any
timing, the first 3 payloads go to each server and the forecasts (``forecast_log_return``,
``prob_up``, bar time) must agree to a relative 1e-5 (absolute 1e-8), else the run stops:
different work is not compared. These requests also trace FKS's compiled forward pass.

Load. The two servers are started one after the other and stay up; then, in each of ``R``
rounds, each server in turn (order alternating round by round) gets the load alone for
``S / R`` seconds while the other idles (its CPU seconds meanwhile are reported as
``cpu_s_while_idle``, about 0). Taking turns spreads any drift of a shared machine over both.
The load: ``N`` client threads in this process, each with its own persistent ``httpx.Client``
(keep-alive), sending back-to-back requests; a server's first turn starts with a 3 s warm-up,
later turns with 1 s (the pipeline refills), neither counted. Counted: requests that start and
end inside a timed window. Reported per server, over all its turns: requests/s, latency
percentiles (p50, p95, p99, max; ms, client side, from sending the body to reading the whole
answer), errors (non-200 answers and exceptions), the server tree's CPU ms per request (all its
processes, psutil), this process's CPU ms per request (the client's own cost), the time from
launch to ready, and memory: the peak resident memory of the server's process tree (every
process, children included, polled with psutil every 0.1 s from launch to stop, summed) and
each process's own peak (for ``mlflow`` the CLI process that launches uvicorn is in the tree).

Ratios: ``fks / mlflow`` requests/s (target >= 3) and ``fks / mlflow`` p99 latency (target
<= 0.5), each with ``target_met``.

Batch-size curve: the ``fks`` server alone, restarted with ``FKS_SERVE_MAX_BATCH_SIZE`` 1, 4,
16, 32 (1 and 32 with ``--quick``), ``C`` seconds each after the warm-up: requests/s, p50, p99,
and the windows per forward pass the service observed in the timed window (the difference of
two scrapes of its ``fks_batch_size`` histogram from ``GET /metrics``: passes per bucket, mean).
With ``--workers`` above 1 a scrape sees one worker's histogram only.

Caveats: the client threads share the machine (with 2 cores, the CPUs too) with the server; on
a machine other jobs share, compare the ratios of one run (both servers saw the same drift),
not absolute figures across runs (``machine.loadavg_1m_at_start_and_end`` hints at such load).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CSV = REPO / "data" / "samples" / "sp500_daily.csv"
NAME = "fks-forecaster"
SYMBOL = "SPX"
BARS = 800
SCALER_ROWS = 2500
CHECKED = 3
COLUMNS = ("ts", "open", "high", "low", "close", "volume")
CURVE = (1, 4, 16, 32)
QUICK_CURVE = (1, 32)
JSON_HEADERS = {"content-type": "application/json"}


def _log(message: str) -> None:
    print(f"[serving bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The model


def _register(root: Path) -> dict[str, Any]:
    """Log and register the forecaster (alias ``champion``) in a store under ``root``."""
    import mlflow

    from config.models import ForecasterConfig
    from features import build_features, get_feature_set
    from market.bars import canonical_bars
    from models.forecaster.network import build_lstm, save_model
    from models.forecaster.pyfunc import build_preprocess, log_forecaster
    from models.preprocessing import FeatureScaler
    from models.registry import register, set_alias
    from models.seeding import seed_everything
    from providers.csv import parse_bars_csv

    config = ForecasterConfig(symbol=SYMBOL)
    feature_set = get_feature_set(config.feature_set)
    bars = canonical_bars(parse_bars_csv(CSV).bars)
    features = build_features(bars.iloc[:SCALER_ROWS], feature_set, timeframe=config.timeframe)
    scaler = FeatureScaler().fit(features.iloc[feature_set.min_history :])
    returns = np.diff(np.log(bars["close"].to_numpy()[:SCALER_ROWS]))
    seed_everything(config.seed)
    network = build_lstm(len(features.columns), config, target_scale=float(np.sqrt(np.mean(returns**2))))
    keras_path = save_model(network, root / "lstm.keras")
    preprocess = build_preprocess(
        feature_set, scaler, lookback=config.lookback, horizon=config.horizon, timeframe=config.timeframe
    )
    min_bars = feature_set.min_history + config.lookback - 1
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment(
        "fks-bench-serving", artifact_location=(root / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        example = bars.reset_index().tail(min_bars)
        info = log_forecaster(keras_model_path=keras_path, preprocess=preprocess, input_example=example)
    version = register(info.model_uri, NAME)
    set_alias(NAME, "champion", version)
    return {
        "tracking_uri": tracking_uri,
        "info": {
            "name": NAME,
            "version": version,
            "alias": "champion",
            "weights": "untrained (seeded); serving cost does not depend on training",
            "feature_set": feature_set.name,
            "features": len(features.columns),
            "lookback": config.lookback,
            "units": list(config.units),
            "horizon": config.horizon,
            "min_bars": min_bars,
            "scaler": f"FeatureScaler fitted on the first {SCALER_ROWS} {SYMBOL} rows",
            "parameters": int(network.count_params()),
        },
    }


# ---------------------------------------------------------------------------------------------
# Payloads


def _stretches(count: int) -> list[tuple[list[str], list[list[float]]]]:
    """``count`` different 800-bar SPX stretches: (ISO times, rows of open..volume)."""
    from providers.csv import parse_bars_csv

    bars = parse_bars_csv(CSV).bars
    if count > len(bars) - BARS + 1:
        raise ValueError(f"at most {len(bars) - BARS + 1} different {BARS}-bar stretches, asked {count}")
    starts = np.unique(np.linspace(0, len(bars) - BARS, count).astype(int))
    if len(starts) != count:
        raise ValueError(f"could not pick {count} different start offsets")
    times = [t.isoformat() for t in bars.index]
    values = bars[list(COLUMNS[1:])].to_numpy(dtype=float).tolist()
    return [(times[s : s + BARS], values[s : s + BARS]) for s in starts.tolist()]


def _fks_body(times: list[str], values: list[list[float]]) -> bytes:
    bars = [dict(zip(COLUMNS, (t, *v), strict=True)) for t, v in zip(times, values, strict=True)]
    return json.dumps({"model": NAME, "series": [{"symbol": SYMBOL, "bars": bars}]}).encode()


def _mlflow_body(times: list[str], values: list[list[float]]) -> bytes:
    data = [[t, *v] for t, v in zip(times, values, strict=True)]
    return json.dumps({"dataframe_split": {"columns": list(COLUMNS), "data": data}}).encode()


def _answer(server: str, payload: dict[str, Any]) -> tuple[str, float, float]:
    """(bar time, forecast log return, P(up)) of a one-series answer."""
    row = payload["predictions"][0] if server == "mlflow" else payload["forecasts"][0]
    return str(row["ts"]), float(row["forecast_log_return"]), float(row["prob_up"])


# ---------------------------------------------------------------------------------------------
# Server processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(root: Any) -> list[Any]:
    import psutil

    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class _Sampler(threading.Thread):
    """Polls the resident memory of a process tree every 0.1 s: peak of the sum, peak per process."""

    def __init__(self, pid: int) -> None:
        import psutil

        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_mib = 0.0
        self.current_mib = 0.0
        self.per_process: dict[int, dict[str, Any]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            total = 0.0
            for proc in _tree(self.root):
                try:
                    rss = proc.memory_info().rss / 2**20
                    seen = self.per_process.get(proc.pid)
                    if seen is None:
                        seen = self.per_process[proc.pid] = {
                            "cmd": _short_cmd(proc.cmdline()),
                            "peak_mib": 0.0,
                        }
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                seen["peak_mib"] = max(seen["peak_mib"], rss)
                total += rss
            self.current_mib = total
            self.peak_mib = max(self.peak_mib, total)
            self._stop_event.wait(0.1)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the tree's live processes so far."""
        import psutil

        total = 0.0
        for proc in _tree(self.root):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total


def _short_cmd(cmdline: list[str]) -> str:
    words = [Path(w).name if i == 0 else w for i, w in enumerate(cmdline)]
    return " ".join(w for w in words if not w.startswith(("-h", "-p", "127.0.0.1")) and not w.isdigit())[:90]


@dataclass
class _Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    sampler: _Sampler
    started: float
    ready_s: float = 0.0
    rss_ready_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _base_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FKS_") and k != "MLFLOW_TRACKING_URI"}
    # mlflow starts `uvicorn` from PATH: the venv's bin must be on it
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["KERAS_BACKEND"] = "tensorflow"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def _serving(
    name: str, cmd: list[str], env: dict[str, str], root: Path, ready_path: str, port: int
) -> Iterator[_Server]:
    """Start ``cmd`` (cwd ``root``), wait until ``ready_path`` answers 200, yield; always stop it."""
    import httpx

    log_path = root / f"{name}-{port}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    server: _Server | None = None
    try:
        sampler = _Sampler(proc.pid)
        sampler.start()
        server = _Server(name, f"http://127.0.0.1:{port}", proc, log_path, sampler, time.perf_counter())
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode} before it was ready:\n{_tail(log_path)}"
                )
            if time.time() > deadline:
                raise RuntimeError(f"{name} was not ready in 300 s:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}{ready_path}", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        server.ready_s = time.perf_counter() - server.started
        time.sleep(0.3)
        server.rss_ready_mib = sampler.current_mib
        yield server
    finally:
        _stop(proc)
        if server is not None:
            server.sampler.stop()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the process we started and its children (then kill what is left after 15 s)."""
    import psutil

    try:
        procs = _tree(psutil.Process(proc.pid))
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _mlflow_server(root: Path, tracking_uri: str, workers: int | None) -> Any:
    port = _free_port()
    env = {**_base_env(root), "MLFLOW_TRACKING_URI": tracking_uri}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    if workers is not None:
        cmd += ["-w", str(workers)]
    return _serving("mlflow", cmd, env, root, "/ping", port)


def _fks_server(root: Path, tracking_uri: str, workers: int | None, max_batch: int | None = None) -> Any:
    port = _free_port()
    data_dir = root / "fks-data"
    data_dir.mkdir(exist_ok=True)
    env = {
        **_base_env(root),
        "FKS_SERVE_AUTH": "false",
        "FKS_MLFLOW_TRACKING_URI": tracking_uri,
        "FKS_DB_URL": f"sqlite:///{root / 'fks.db'}",
        "FKS_DATA_DIR": str(data_dir),
    }
    if max_batch is not None:
        env["FKS_SERVE_MAX_BATCH_SIZE"] = str(max_batch)
    cmd = [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers or 1)]  # fmt: skip
    return _serving("fks", cmd, env, root, "/ready", port)


# ---------------------------------------------------------------------------------------------
# Load


def _check(server: _Server, path: str, bodies: list[bytes]) -> list[tuple[str, float, float]]:
    """The server's answers to the first ``CHECKED`` bodies (each must be a 200)."""
    import httpx

    answers = []
    with httpx.Client(timeout=120) as client:
        for body in bodies[:CHECKED]:
            reply = client.post(f"{server.url}{path}", content=body, headers=JSON_HEADERS)
            if reply.status_code != 200:
                raise RuntimeError(f"{server.name} answered {reply.status_code}: {reply.text[:500]}")
            answers.append(_answer(server.name, reply.json()))
    return answers


def _agreement(
    ours: list[tuple[str, float, float]], theirs: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Raise unless both servers forecast the same (bar time, return, P(up)) for each payload."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        same_ts = a[0] == b[0] or _same_time(a[0], b[0])
        close = all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-8) for x, y in zip(a[1:], b[1:], strict=True))
        worst = max(worst, abs(a[1] - b[1]), abs(a[2] - b[2]))
        if not (same_ts and close):
            raise RuntimeError(f"payload {i}: fks answered {a}, mlflow {b}: the servers do different work")
    return {
        "payloads_checked": len(ours),
        "max_abs_diff": worst,
        "tolerance": "rel 1e-5, abs 1e-8",
        "agree": True,
    }


def _same_time(a: str, b: str) -> bool:
    import pandas as pd

    return bool(pd.Timestamp(a) == pd.Timestamp(b))


def _metrics(url: str) -> str:
    import httpx

    try:
        return httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""


_SAMPLE = re.compile(r'^(fks_batch_size_(?:bucket|count|sum))(?:\{le="([^"]+)"\})?\s+(\S+)$', re.M)


def _batch_histogram(text: str) -> dict[str, Any]:
    buckets: dict[str, float] = {}
    count = total = 0.0
    for name, le, value in _SAMPLE.findall(text):
        if name.endswith("bucket"):
            buckets[le] = float(value)
        elif name.endswith("count"):
            count = float(value)
        else:
            total = float(value)
    return {"buckets": buckets, "count": count, "sum": total}


def _batch_distribution(scrapes: list[tuple[str, str]]) -> dict[str, Any]:
    """Forward passes per batch-size bucket between pairs of scrapes (summed), and the mean size."""
    cumulative: dict[str, float] = {}
    passes = windows = 0.0
    for before, after in scrapes:
        a, b = _batch_histogram(before), _batch_histogram(after)
        if not b["buckets"]:
            return {"note": "no fks_batch_size histogram in /metrics"}
        for le, value in b["buckets"].items():
            cumulative[le] = cumulative.get(le, 0.0) + value - a["buckets"].get(le, 0.0)
        passes += b["count"] - a["count"]
        windows += b["sum"] - a["sum"]
    out: dict[str, int] = {}
    below, lower = 0.0, 0.0
    for le in sorted(cumulative, key=lambda s: math.inf if s == "+Inf" else float(s)):
        n = round(cumulative[le] - below)
        upper = math.inf if le == "+Inf" else float(le)
        if upper == math.inf:
            label = f">{lower:g}"
        else:
            label = f"{upper:g}" if upper - lower <= 1 else f"{lower + 1:g}-{upper:g}"
        if n:
            out[label] = n
        below, lower = cumulative[le], upper
    return {
        "forward_passes": round(passes),
        "windows": round(windows),
        "mean_batch": round(windows / passes, 2) if passes else None,
        "passes_by_batch_size": out,
    }


def _cache_metrics(text: str) -> dict[str, float]:
    """Any ``*cache*`` samples the service exports (to show that the payloads defeat its cache)."""
    found = {}
    for line in text.splitlines():
        if "cache" in line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                found[key] = float(value)
    return found


@dataclass
class _Segment:
    """One timed stretch of load on one server: what the clients saw and what the server used."""

    seconds: float
    latencies: list[float]
    errors: list[str]
    server_cpu_s: float
    client_cpu_s: float
    metrics_before: str = ""
    metrics_after: str = ""


def _load(
    server: _Server, path: str, bodies: list[bytes], clients: int, warmup_s: float, seconds: float
) -> _Segment:
    """``clients`` threads posting ``bodies`` back to back: warm-up, then ``seconds`` timed."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[list[str]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    window: dict[str, float] = {}

    def client_loop(i: int) -> None:
        n = len(bodies)
        k = cursors[i]
        url = f"{server.url}{path}"
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=1)) as client:
            barrier.wait()
            start, end = window["start"], window["end"]
            while True:
                sent = time.perf_counter()
                if sent >= end:
                    break
                status = ""
                try:
                    reply = client.post(url, content=bodies[k % n], headers=JSON_HEADERS)
                    if reply.status_code != 200:
                        status = f"HTTP {reply.status_code}: {reply.text[:200]}"
                except Exception as exc:  # an exception is an error of this request, not of the run
                    status = f"{type(exc).__name__}: {exc}"[:200]
                done = time.perf_counter()
                k += 1
                cursors[i] = k
                if sent >= start and done <= end:
                    if status:
                        errors[i].append(status)
                    else:
                        latencies[i].append(done - sent)

    # each client walks its own stretch of the cycle and goes on where its last segment stopped
    cursors: list[int] = server.extra.setdefault(
        "cursors", [i * len(bodies) // clients for i in range(clients)]
    )
    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["start"], window["end"] = now + warmup_s, now + warmup_s + seconds
    barrier.wait()
    time.sleep(max(0.0, window["start"] - time.perf_counter()))
    before = _metrics(server.url) if server.name == "fks" else ""
    cpu_server, cpu_client = server.sampler.cpu_seconds(), time.process_time()
    time.sleep(max(0.0, window["end"] - time.perf_counter()))
    cpu_server, cpu_client = server.sampler.cpu_seconds() - cpu_server, time.process_time() - cpu_client
    after = _metrics(server.url) if server.name == "fks" else ""
    for t in threads:
        t.join()
    lat = [x for per in latencies for x in per]
    return _Segment(seconds, lat, [x for per in errors for x in per], cpu_server, cpu_client, before, after)


def _summary(server: _Server, segments: list[_Segment]) -> dict[str, Any]:
    """Requests/s, latency percentiles, errors and CPU per request over ``segments`` together."""
    seconds = sum(s.seconds for s in segments)
    lat = np.array([x for s in segments for x in s.latencies]) * 1e3
    errs = [x for s in segments for x in s.errors]
    done = len(lat)
    result: dict[str, Any] = {
        "timed_s": round(seconds, 2),
        "requests": done,
        "requests_per_s": round(done / seconds, 2),
        "requests_per_s_by_segment": [round(len(s.latencies) / s.seconds, 2) for s in segments],
        "latency_ms": (
            {
                "mean": round(float(lat.mean()), 2),
                "p50": round(float(np.percentile(lat, 50)), 2),
                "p95": round(float(np.percentile(lat, 95)), 2),
                "p99": round(float(np.percentile(lat, 99)), 2),
                "max": round(float(lat.max()), 2),
            }
            if done
            else None
        ),
        "errors": len(errs),
        "server_cpu_ms_per_request": round(sum(s.server_cpu_s for s in segments) * 1e3 / done, 2)
        if done
        else None,
        "client_cpu_ms_per_request": round(sum(s.client_cpu_s for s in segments) * 1e3 / done, 2)
        if done
        else None,
    }
    if errs:
        result["error_examples"] = sorted(set(errs))[:5]
    if server.name == "fks":
        result["batches"] = _batch_distribution([(s.metrics_before, s.metrics_after) for s in segments])
        cache: dict[str, float] = {}
        for s in segments:
            before, after = _cache_metrics(s.metrics_before), _cache_metrics(s.metrics_after)
            for k, v in after.items():
                cache[k] = cache.get(k, 0.0) + v - before.get(k, 0.0)
        if cache:  # in the timed windows
            result["cache_metrics"] = {k: round(v) for k, v in cache.items()}
    return result


def _memory(server: _Server) -> dict[str, Any]:
    server.sampler.stop()
    return {
        "peak_rss_mib": round(server.sampler.peak_mib, 1),
        "rss_when_ready_mib": round(server.rss_ready_mib, 1),
        "processes": [
            {"cmd": p["cmd"], "peak_rss_mib": round(p["peak_mib"], 1)}
            for p in server.sampler.per_process.values()
        ],
    }


# ---------------------------------------------------------------------------------------------


def _compare(
    root: Path, tracking_uri: str, stretches: list[Any], options: argparse.Namespace, warmup_s: float
) -> dict[str, Any]:
    """Both servers up (started one after the other), answers checked, then ``rounds`` rounds in
    which each server in turn gets the load alone (order alternating)."""
    bodies = {"mlflow": [_mlflow_body(*s) for s in stretches], "fks": [_fks_body(*s) for s in stretches]}
    paths = {"mlflow": "/invocations", "fks": "/v1/forecast"}
    with contextlib.ExitStack() as stack:
        _log("mlflow models serve: starting")
        mlf = stack.enter_context(_mlflow_server(root, tracking_uri, options.workers))
        reference = _check(mlf, paths["mlflow"], bodies["mlflow"])
        _log(f"mlflow models serve: ready in {mlf.ready_s:.1f} s; fks: starting")
        fks = stack.enter_context(_fks_server(root, tracking_uri, options.workers))
        agreement = _agreement(_check(fks, paths["fks"], bodies["fks"]), reference)
        _log(f"fks: ready in {fks.ready_s:.1f} s; the answers agree")
        servers = {"mlflow": mlf, "fks": fks}
        segments: dict[str, list[_Segment]] = {"mlflow": [], "fks": []}
        idle_cpu = {"mlflow": 0.0, "fks": 0.0}
        each = options.seconds / options.rounds
        for r in range(options.rounds):
            for name in ("mlflow", "fks") if r % 2 == 0 else ("fks", "mlflow"):
                other = "fks" if name == "mlflow" else "mlflow"
                ramp = warmup_s if r == 0 else min(1.0, warmup_s)  # each server's first turn warms it up
                _log(f"round {r + 1}/{options.rounds}: {name}, {each:g} s")
                cpu_other = servers[other].sampler.cpu_seconds()
                segments[name].append(
                    _load(servers[name], paths[name], bodies[name], options.clients, ramp, each)
                )
                idle_cpu[other] += servers[other].sampler.cpu_seconds() - cpu_other
        results = {}
        for name, server in servers.items():
            results[name] = {
                "route": {"mlflow": "POST /invocations (dataframe_split)", "fks": "POST /v1/forecast"}[name],
                "workers": options.workers or 1,
                "request_bytes_mean": round(float(np.mean([len(b) for b in bodies[name]]))),
                "ready_s": round(server.ready_s, 2),
                **_summary(server, segments[name]),
                "cpu_s_while_idle": round(idle_cpu[name], 2),
            }
    for name, server in servers.items():
        results[name]["memory"] = _memory(server)
    return {"agreement": agreement, "results": results}


def _curve(
    root: Path, tracking_uri: str, stretches: list[Any], options: argparse.Namespace, warmup_s: float
) -> list[dict[str, Any]]:
    """The fks server restarted at each max batch size, timed alone."""
    bodies = [_fks_body(*s) for s in stretches]
    points = []
    for size in QUICK_CURVE if options.quick else CURVE:
        _log(f"fks with FKS_SERVE_MAX_BATCH_SIZE={size}: timing {options.curve_seconds:g} s")
        with _fks_server(root, tracking_uri, options.workers, max_batch=size) as server:
            _check(server, "/v1/forecast", bodies)  # traces the forward pass before the clock starts
            measured = _summary(
                server,
                [_load(server, "/v1/forecast", bodies, options.clients, warmup_s, options.curve_seconds)],
            )
        points.append(
            {
                "max_batch_size": size,
                "requests_per_s": measured["requests_per_s"],
                "p50_ms": (measured["latency_ms"] or {}).get("p50"),
                "p99_ms": (measured["latency_ms"] or {}).get("p99"),
                "errors": measured["errors"],
                "server_cpu_ms_per_request": measured["server_cpu_ms_per_request"],
                "batches": measured["batches"],
                "peak_rss_mib": round(server.sampler.peak_mib, 1),
            }
        )
        server.sampler.stop()
    return points


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Measure and return the benchmark's figures."""
    import mlflow

    from config.settings import Settings

    warmup_s = 1.0 if options.quick else 3.0
    defaults = Settings()
    load_before = os.getloadavg()
    stretches = _stretches(options.payloads)
    report: dict[str, Any] = {"benchmark": "serving"}
    with tempfile.TemporaryDirectory(prefix="fks-bench-serving-") as tmp:
        root = Path(tmp)
        _log("registering the forecaster")
        registered = _register(root)
        report["model"] = registered["info"]
        compared = _compare(root, registered["tracking_uri"], stretches, options, warmup_s)
        points = _curve(root, registered["tracking_uri"], stretches, options, warmup_s)

    results = compared["results"]
    results["fks"]["max_batch_size"] = defaults.serve_max_batch_size
    results["fks"]["max_wait_ms"] = defaults.serve_max_wait_ms
    mlf, fks = results["mlflow"], results["fks"]
    throughput = fks["requests_per_s"] / mlf["requests_per_s"] if mlf["requests_per_s"] else math.inf
    p99 = (fks["latency_ms"] or {}).get("p99", math.inf) / ((mlf["latency_ms"] or {}).get("p99") or math.inf)
    report.update(
        {
            "agreement": compared["agreement"],
            "load": {
                "clients": options.clients,
                "client": "one thread and one persistent httpx.Client each, in the benchmark process",
                "seconds_per_server": options.seconds,
                "rounds": options.rounds,
                "warmup_s": warmup_s,
                "payloads": len(stretches),
                "bars_per_request": BARS,
                "symbols_per_request": 1,
                "fks_feature_cache_size": defaults.serve_feature_cache,
                "order": "both servers up, rounds alternate mlflow/fks, one loaded at a time; then the curve",
            },
            "workers": {
                "mlflow": options.workers or 1,
                "fks": options.workers or 1,
                "mlflow_default": "1: MLFLOW_MODELS_WORKERS/--workers default None, PyFuncBackend uses "
                "`workers or 1` -> `uvicorn --workers 1`",
                "fks_default": "1: python -m serving --workers 1",
            },
            "results": results,
            "ratios": {
                "throughput_fks_over_mlflow": {
                    "value": round(throughput, 2),
                    "target": ">= 3",
                    "target_met": bool(throughput >= 3),
                },
                "p99_fks_over_mlflow": {
                    "value": round(p99, 3),
                    "target": "<= 0.5",
                    "target_met": bool(p99 <= 0.5),
                },
            },
            "batch_size_curve": {"seconds_each": options.curve_seconds, "points": points},
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "mlflow": mlflow.__version__,
                "loadavg_1m_at_start_and_end": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            },
        }
    )
    return report


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark and print its JSON object."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="timed load per server (default 20)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating turns per server (default 4)")
    parser.add_argument(
        "--curve-seconds", type=float, default=8.0, help="timed load per batch size (default 8)"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--payloads", type=int, default=1024, help="distinct 800-bar bodies (default 1024)")
    parser.add_argument("--workers", type=int, default=None, help="server processes of each (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per server, a 2-point curve")
    options = parser.parse_args(argv)
    if options.quick:
        options.seconds, options.curve_seconds, options.rounds = 3.0, 3.0, 1
    if min(options.seconds, options.curve_seconds) <= 0 or min(options.clients, options.rounds) < 1:
        parser.error("--seconds and --curve-seconds must be > 0, --clients and --rounds >= 1")
    if options.payloads < CHECKED:
        parser.error(f"--payloads must be >= {CHECKED}")
    if options.workers is not None and options.workers < 1:
        parser.error("--workers must be >= 1")
    signal.signal(signal.SIGTERM, _interrupt)  # stop the servers on `kill` too (the finally blocks run)
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON object alone
        report = run(options)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repository importable
        sys.path.insert(0, str(REPO))
    main()
