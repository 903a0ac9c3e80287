"""Forecaster benchmark: LSTM training throughput and pyfunc inference latency, against bare Keras.

Run ``python -m benchmarks.forecaster``; options: ``--epochs E`` (default 6 per training run),
``--rounds R`` (default 2 training rounds), ``--runs-1 N`` and ``--runs-256 M`` (timed inference
rounds, default 40 and 7). Prints one JSON object. Everything runs in one process on the shipped
SPX daily series (``data/samples/sp500_daily.csv``), the default feature set and
``ForecasterConfig(symbol="SPX")`` defaults (lookback 30, units (32,), batch 64); the MLflow store
is a SQLite file in a temporary folder, removed at the end.

Training (train windows of :func:`models.forecaster.training.prepare_dataset` and a chronological split, the
scaler fitted on train rows, windows built once as numpy arrays). Each round runs these three
(in this order in even rounds, reversed in odd ones):

* ``ours``: :func:`models.forecaster.network.fit_lstm` for E epochs (validation each epoch, early
  stopping armed, seeded), timed per epoch through its ``epoch_callback``.
* ``anchor_same_work``: :func:`models.forecaster.network.build_lstm` after the same seeding, then bare
  ``model.fit`` on the same arrays, batch size, shuffling and validation data, no callbacks but a
  timer. The ratio ``ours / anchor`` per epoch is the overhead of our pipeline around Keras.
* ``anchor_train_only``: the same without validation data (what the validation pass costs).

An epoch's time is the gap between two epoch ends; the first epoch (graph tracing, and for ``ours``
also seeding, checks, model build and compile) is reported apart, steady epochs are the median of
the others over all rounds. Samples/s counts training windows only. One untimed 1-epoch fit warms
TensorFlow up first.

Inference: the final model is saved, logged with :func:`models.forecaster.pyfunc.log_forecaster` and loaded
with ``mlflow.pyfunc.load_model``. Inputs are raw bars with ``ts`` as ISO 8601 strings (as JSON
brings them): batch 1 is one symbol with ``min_bars = min_history + lookback - 1`` bars (the least
the model accepts); batch 256 is 256 such
series, copies of SPX stretches at spread offsets relabelled ``S000`` ... ``S255``, in one frame.
Each figure is the median of N (or M) timed rounds after two warm-up rounds; in every round the
six calls below take turns, so drift of the machine weighs on all of them alike:

* ``pyfunc``: ``PyFuncModel.predict`` (MLflow's schema check, then ours).
* ``forecaster``: :meth:`models.forecaster.pyfunc.ForecasterModel.predict` unwrapped (no schema check).
* ``windows``: :meth:`ForecasterModel.windows` alone (bars to scaled windows).
* anchors, on the very windows the pyfunc builds (``windows``' output, so the forecasts must
  agree): ``predict_lstm``, bare ``model.predict(X, batch_size=len(X), verbose=0)`` (one forward
  pass, as ``predict_lstm`` batches it) and a direct ``model(X, training=False)`` call (eager,
  no ``predict`` machinery) of the same loaded ``.keras`` network.

Ratios: ``pyfunc`` over each anchor, ``pyfunc / forecaster`` (MLflow's own share; about 1 when it
costs nothing measurable), ``windows / pyfunc`` (the share of feature building and scaling) and
batch 256 over batch 1.

``peak_rss_mb`` is the process's peak resident memory (``ru_maxrss``) after each stage. No targets
are set; the figures are for tracking.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import peak_rss_mb as _peak_rss_mb

CSV = Path(__file__).resolve().parent.parent / "data" / "samples" / "sp500_daily.csv"
SYMBOL = "SPX"
WIDE = 256


# ---------------------------------------------------------------------------------------------
# Training


def _epoch_timer(keras: Any, ends: list[float]) -> Any:
    class _Timer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            ends.append(time.perf_counter())

    return _Timer()


def _targets(y: np.ndarray) -> dict[str, np.ndarray]:
    y = np.asarray(y, dtype=np.float32)
    return {"ret": y[:, None], "dir": (y > 0).astype(np.float32)[:, None]}


def _epochs(start: float, ends: list[float]) -> tuple[float, list[float]]:
    """First epoch's seconds (from ``start``) and the steady epochs' seconds (gaps between ends)."""
    return ends[0] - start, [b - a for a, b in itertools.pairwise(ends)]


def _fit_ours(data: dict[str, np.ndarray], config: Any, epochs: int) -> tuple[float, list[float], float, Any]:
    from models.forecaster.network import fit_lstm

    ends: list[float] = []
    start = time.perf_counter()
    fit = fit_lstm(
        data["X_train"], data["y_train"], data["X_val"], data["y_val"], config,
        epoch_callback=lambda epoch, logs: ends.append(time.perf_counter()),
        epochs=epochs,
    )  # fmt: skip
    total = time.perf_counter() - start
    first, steady = _epochs(start, ends)
    return first, steady, total, fit


def _fit_anchor(
    data: dict[str, np.ndarray], config: Any, epochs: int, *, validation: bool
) -> tuple[float, list[float], float, float]:
    """Bare Keras: same seeding and architecture, ``model.fit`` on the same arrays."""
    import keras

    from models.forecaster.network import build_lstm
    from models.seeding import seed_everything

    start_build = time.perf_counter()
    seed_everything(config.seed)
    y = data["y_train"]
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    model = build_lstm(data["X_train"].shape[2], config, target_scale=rms if rms > 0 else 1.0)
    build = time.perf_counter() - start_build
    ends: list[float] = []
    val = (data["X_val"], _targets(data["y_val"])) if validation else None
    start = time.perf_counter()
    model.fit(
        data["X_train"], _targets(y), validation_data=val, epochs=epochs, batch_size=config.batch_size,
        shuffle=True, callbacks=[_epoch_timer(keras, ends)], verbose=0,
    )  # fmt: skip
    total = time.perf_counter() - start
    first, steady = _epochs(start, ends)
    return build, first, steady, total


def _train(data: dict[str, np.ndarray], config: Any, epochs: int, rounds: int) -> tuple[dict[str, Any], Any]:
    # Untimed warm-up: TensorFlow's runtime, thread pools and first trace happen here.
    warm = {k: v[: 4 * config.batch_size] for k, v in data.items()}
    _fit_anchor(warm, config, 1, validation=True)

    n_train = int(data["X_train"].shape[0])
    firsts: dict[str, list[float]] = {"ours": [], "anchor_same_work": [], "anchor_train_only": []}
    steadies: dict[str, list[float]] = {k: [] for k in firsts}
    totals: dict[str, list[float]] = {k: [] for k in firsts}
    builds: list[float] = []
    fit = None
    for i in range(rounds):
        order = list(firsts) if i % 2 == 0 else list(reversed(firsts))  # alternate who goes first
        for name in order:
            if name == "ours":
                first, steady, total, fit = _fit_ours(data, config, epochs)
            else:
                validation = name == "anchor_same_work"
                build, first, steady, total = _fit_anchor(data, config, epochs, validation=validation)
                builds.append(build)
            firsts[name].append(first)
            steadies[name] += steady
            totals[name].append(total)

    figures: dict[str, Any] = {}
    for name in firsts:
        epoch_s = statistics.median(steadies[name])
        figures[name] = {
            "epoch_s": round(epoch_s, 4),
            "samples_per_s": round(n_train / epoch_s),
            "first_epoch_s": round(statistics.median(firsts[name]), 3),
            "first_epoch_samples_per_s": round(n_train / statistics.median(firsts[name])),
            "fit_total_s": round(statistics.median(totals[name]), 3),
        }
    figures["anchor_same_work"]["build_compile_s"] = round(statistics.median(builds), 3)
    ours, same, bare = (statistics.median(steadies[k]) for k in firsts)
    ratios = {
        "ours_over_anchor_epoch": round(ours / same, 3),
        "ours_over_anchor_first_epoch": round(
            statistics.median(firsts["ours"]) / statistics.median(firsts["anchor_same_work"]), 3
        ),
        "ours_over_train_only_epoch": round(ours / bare, 3),
        "validation_share_of_epoch": round(1.0 - bare / same, 3),
    }
    return {"results": figures, "ratios": ratios}, fit


# ---------------------------------------------------------------------------------------------
# Inference


def _raw_frame(bars: Any, starts: list[int], length: int, names: list[str]) -> Any:
    """Raw-bar input: the SPX stretches ``[s, s + length)`` labelled ``names``, ``ts`` as ISO strings."""
    import pandas as pd

    parts = []
    for start, name in zip(starts, names, strict=True):
        part = bars.iloc[start : start + length].reset_index()
        part["ts"] = part["ts"].map(lambda t: t.isoformat()).astype(object)
        part.insert(0, "symbol", name)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _log_and_load(tmp: Path, fit: Any, scaler: Any, feature_set: Any, config: Any, example: Any) -> Any:
    import mlflow

    from models.forecaster.network import save_model
    from models.forecaster.pyfunc import build_preprocess, log_forecaster

    keras_path = save_model(fit.model, tmp / "lstm.keras")
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = mlflow.create_experiment("fks-bench", artifact_location=(tmp / "artifacts").as_uri())
    preprocess = build_preprocess(
        feature_set, scaler, lookback=config.lookback, horizon=config.horizon, timeframe=config.timeframe
    )
    with mlflow.start_run(experiment_id=experiment):
        info = log_forecaster(keras_model_path=keras_path, preprocess=preprocess, input_example=example)
    start = time.perf_counter()
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    return loaded, keras_path, time.perf_counter() - start


def _interleaved(funcs: dict[str, Callable[[], Any]], runs: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each function over ``runs`` rounds, the functions taking turns in each round.

    Taking turns spreads any drift of the machine (other load, clocks) over all of them alike.
    """
    for _ in range(warmup):
        for func in funcs.values():
            func()
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(runs):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _infer(loaded: Any, keras_path: Path, frames: dict[int, Any], runs: dict[int, int]) -> dict[str, Any]:
    from models.forecaster.network import load_model, predict_lstm

    forecaster = loaded.unwrap_python_model()
    network = load_model(keras_path)
    results: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    for batch, frame in frames.items():
        _, _, X = forecaster.windows(frame)
        out = loaded.predict(frame)
        ret, _ = predict_lstm(network, X)
        same = np.allclose(out["forecast_log_return"].to_numpy(), ret, rtol=1e-5, atol=1e-7)
        if len(out) != batch or not same:
            raise RuntimeError(f"batch {batch}: the pyfunc's forecasts differ from predict_lstm's")
        t = _interleaved(
            {
                "pyfunc": lambda f=frame: loaded.predict(f),
                "forecaster": lambda f=frame: forecaster.predict(None, f),
                "windows": lambda f=frame: forecaster.windows(f),
                "predict_lstm": lambda x=X: predict_lstm(network, x),
                "keras_predict": lambda x=X: network.predict(x, batch_size=len(x), verbose=0),
                "keras_call": lambda x=X: network(x, training=False),
            },
            runs[batch],
        )
        results[f"batch_{batch}"] = {
            "symbols": batch,
            "raw_bars": len(frame),
            "runs": runs[batch],
            "ms": {k: round(v * 1e3, 3) for k, v in t.items()},
            "symbols_per_s_pyfunc": round(batch / t["pyfunc"], 1),
        }
        for anchor in ("predict_lstm", "keras_predict", "keras_call"):
            ratios[f"batch_{batch}_pyfunc_over_{anchor}"] = round(t["pyfunc"] / t[anchor], 2)
        ratios[f"batch_{batch}_pyfunc_over_forecaster"] = round(t["pyfunc"] / t["forecaster"], 3)
        ratios[f"batch_{batch}_windows_share_of_pyfunc"] = round(t["windows"] / t["pyfunc"], 3)
    b1, bw = results["batch_1"]["ms"]["pyfunc"], results[f"batch_{WIDE}"]["ms"]["pyfunc"]
    ratios[f"pyfunc_batch_{WIDE}_over_batch_1"] = round(bw / b1, 1)
    return {"results": results, "ratios": ratios}


# ---------------------------------------------------------------------------------------------


def run(epochs: int, rounds: int, runs_1: int, runs_wide: int) -> dict[str, Any]:
    """Measure and return the benchmark's figures."""
    import keras
    import mlflow
    import tensorflow as tf

    from config.models import ForecasterConfig
    from features import get_feature_set
    from models.forecaster.training import _windows, prepare_dataset
    from models.preprocessing import FeatureScaler
    from models.splits import chronological_split
    from providers.csv import parse_bars_csv

    rss: dict[str, float] = {"after_imports": _peak_rss_mb()}
    config = ForecasterConfig(symbol=SYMBOL)
    feature_set = get_feature_set(config.feature_set)
    bars = parse_bars_csv(CSV).bars
    start = time.perf_counter()
    dataset = prepare_dataset(bars, feature_set, config)
    split = chronological_split(
        dataset.n_samples,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        purge=config.purge,
    )
    scaler = FeatureScaler().fit(dataset.rows[dataset.window_rows(split.train)])
    X_train, y_train = _windows(dataset, scaler, split.train)
    X_val, y_val = _windows(dataset, scaler, split.val)
    prepare_s = time.perf_counter() - start
    data = {"X_train": X_train, "y_train": y_train, "X_val": X_val, "y_val": y_val}
    rss["after_data"] = _peak_rss_mb()

    training, fit = _train(data, config, epochs, rounds)
    rss["after_training"] = _peak_rss_mb()

    min_bars = feature_set.min_history + config.lookback - 1
    starts = np.linspace(0, len(bars) - min_bars, WIDE).astype(int).tolist()
    frames = {
        1: _raw_frame(bars, [starts[-1]], min_bars, [SYMBOL]),
        WIDE: _raw_frame(bars, starts, min_bars, [f"S{i:03d}" for i in range(WIDE)]),
    }
    example = bars.reset_index().tail(min_bars)
    with tempfile.TemporaryDirectory(prefix="fks-bench-") as tmp:
        start = time.perf_counter()
        loaded, keras_path, load_s = _log_and_load(Path(tmp), fit, scaler, feature_set, config, example)
        log_s = time.perf_counter() - start - load_s
        rss["after_log_load"] = _peak_rss_mb()
        inference = _infer(loaded, keras_path, frames, {1: runs_1, WIDE: runs_wide})
        rss["after_inference"] = _peak_rss_mb()

    return {
        "benchmark": "models.forecaster",
        "data": {
            "series": f"{SYMBOL} daily, {CSV.name}",
            "bars": len(bars),
            "feature_set": feature_set.name,
            "features": len(dataset.feature_names),
            "warmup": feature_set.warmup,
            "min_bars": min_bars,
            "samples": dataset.n_samples,
            "train_samples": int(X_train.shape[0]),
            "val_samples": int(X_val.shape[0]),
            "prepare_s": round(prepare_s, 3),
        },
        "config": {
            "lookback": config.lookback,
            "units": list(config.units),
            "batch_size": config.batch_size,
            "horizon": config.horizon,
            "epochs_per_fit": epochs,
            "rounds": rounds,
        },
        "training": {
            "statistic": "steady epoch: median gap between epoch ends, all rounds; first epoch apart",
            **training,
        },
        "inference": {
            "statistic": "median of N rounds after 2 warm-up rounds, the six calls taking turns each round",
            "log_model_s": round(log_s, 3),
            "pyfunc_load_s": round(load_s, 3),
            **inference,
        },
        "peak_rss_mb": rss,
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "mlflow": mlflow.__version__,
            "cpus": os.cpu_count(),
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark and print its JSON object."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.forecaster", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--epochs", type=int, default=6, help="epochs per training run (default 6, >= 2)")
    parser.add_argument("--rounds", type=int, default=2, help="training rounds (default 2)")
    parser.add_argument("--runs-1", type=int, default=40, help="timed batch-1 rounds (default 40)")
    parser.add_argument("--runs-256", type=int, default=7, help="timed batch-256 rounds (default 7)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is reported apart)")
    if min(args.rounds, args.runs_1, args.runs_256) < 1:
        parser.error("--rounds, --runs-1 and --runs-256 must be >= 1")
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON object alone
        report = run(args.epochs, args.rounds, args.runs_1, args.runs_256)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repository importable
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
