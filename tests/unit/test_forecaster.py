"""The LSTM forecaster: shapes, determinism, what it learns on an AR(1) series, early stopping,
the epoch callback, save/load, the learning-curve figure and input errors.

Models are tiny (8 units, lookback 10, a few hundred windows) so the module runs in seconds on 2 CPUs.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from config.models import ForecasterConfig
from models.forecaster import (
    FitResult,
    build_lstm,
    fit_lstm,
    learning_curve_figure,
    load_model,
    predict_lstm,
    save_model,
)
from models.seeding import seed_everything

LOOKBACK = 10
ROOT = Path(__file__).resolve().parents[2]


def _ar1_windows(n: int = 720, phi: float = 0.5, sigma: float = 0.01, seed: int = 3) -> dict[str, np.ndarray]:
    """Daily-like log returns r_t = phi * r_{t-1} + eps_t, eps ~ N(0, sigma^2).

    Feature row t is the z-scored return r_t (what the feature pipeline's scaler would give); the
    window ending at t is labelled with the next return r_{t+1}. The best possible forecast is
    phi * r_t, whose RMSE is sigma, against sqrt(sigma^2 / (1 - phi^2)) = 1.155 sigma for the zero
    forecast, and whose directional accuracy is 1/2 + arcsin(phi)/pi = 2/3.
    Split chronologically 65/35 with a purge gap of lookback + 1 windows.
    """
    rng = np.random.default_rng(seed)
    eps = rng.normal(0.0, sigma, n)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + eps[t]
    z = (r - r[: int(0.65 * n)].mean()) / r[: int(0.65 * n)].std()
    X = np.lib.stride_tricks.sliding_window_view(z[:-1], LOOKBACK)[..., None].astype(np.float32)
    y = r[LOOKBACK:].astype(np.float32)
    n_train = int(0.65 * len(X))
    gap = LOOKBACK + 1
    return {
        "X_train": X[:n_train],
        "y_train": y[:n_train],
        "X_val": X[n_train + gap :],
        "y_val": y[n_train + gap :],
    }


def _config(**overrides: object) -> ForecasterConfig:
    base: dict[str, object] = {
        "lookback": LOOKBACK,
        "units": (8,),
        "dropout": 0.0,
        "learning_rate": 1e-2,
        "batch_size": 32,
        "epochs": 12,
        "patience": 3,
        "seed": 11,
    }
    base.update(overrides)
    return ForecasterConfig.model_validate(base)


@pytest.fixture(scope="module")
def ar1() -> dict[str, np.ndarray]:
    return _ar1_windows()


@pytest.fixture(scope="module")
def trained(ar1: dict[str, np.ndarray]) -> FitResult:
    return fit_lstm(ar1["X_train"], ar1["y_train"], ar1["X_val"], ar1["y_val"], _config())


# --- building ---------------------------------------------------------------------------------


def test_build_lstm_stacks_layers_and_names_two_heads() -> None:
    seed_everything(0)
    model = build_lstm(3, _config(units=(8, 4), dropout=0.2))
    lstms = [layer for layer in model.layers if layer.name.startswith("lstm_")]
    dropouts = [layer for layer in model.layers if layer.name.startswith("dropout_")]
    assert [layer.units for layer in lstms] == [8, 4]
    assert [layer.return_sequences for layer in lstms] == [True, False]
    assert [layer.rate for layer in dropouts] == [0.2, 0.2]
    assert tuple(model.inputs[0].shape) == (None, LOOKBACK, 3)
    out = model.predict(np.zeros((5, LOOKBACK, 3), np.float32), verbose=0)
    assert set(out) == {"ret", "dir"}
    assert out["ret"].shape == (5, 1) and out["dir"].shape == (5, 1)
    assert ((out["dir"] > 0) & (out["dir"] < 1)).all()
    assert model.get_layer("dir").activation.__name__ == "sigmoid"


def test_build_lstm_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_features"):
        build_lstm(0, _config())
    with pytest.raises(ValueError, match="target_scale"):
        build_lstm(2, _config(), target_scale=0.0)


def test_importing_the_model_modules_imports_no_heavy_library() -> None:
    code = (
        "import sys, models.forecaster, models.explain, models.seeding; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'shap', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- training -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_learns_the_ar1_structure(trained: FitResult, ar1: dict[str, np.ndarray]) -> None:
    ret, p_up = predict_lstm(trained.model, ar1["X_val"])
    y = ar1["y_val"].astype(np.float64)
    rmse = float(np.sqrt(np.mean((ret - y) ** 2)))
    rmse_zero = float(np.sqrt(np.mean(y**2)))
    # Optimum is rmse / rmse_zero = sqrt(1 - 0.5**2) = 0.866; a model that learned nothing sits at ~1.
    assert rmse < 0.93 * rmse_zero, (rmse, rmse_zero)
    # Optimum directional accuracy is 2/3; coin flipping gives 1/2.
    assert np.mean((ret > 0) == (y > 0)) > 0.6
    assert np.mean((p_up > 0.5) == (y > 0)) > 0.6
    # The forecast is in log-return units (target_scale rescaling), close to 0.5 * r_t.
    slope = np.polyfit(ar1["X_val"][:, -1, 0] * np.std(ar1["y_train"]), ret, 1)[0]
    assert 0.3 < slope < 0.7, slope


@pytest.mark.slow
def test_fit_result_history_and_best_epoch(trained: FitResult) -> None:
    h = trained.history
    assert {
        "loss",
        "val_loss",
        "ret_loss",
        "dir_loss",
        "val_ret_loss",
        "val_dir_loss",
        "dir_accuracy",
    } <= set(h)
    assert all(len(v) == trained.epochs_run for v in h.values())
    assert 1 <= trained.epochs_run <= 12
    assert h["val_loss"][trained.best_epoch] == min(h["val_loss"])
    assert trained.best_val_loss == min(h["val_loss"])


@pytest.mark.slow
def test_same_seed_same_predictions_other_seed_differs(ar1: dict[str, np.ndarray]) -> None:
    cfg = _config(epochs=3, units=(6,), dropout=0.1)
    args = (ar1["X_train"][:200], ar1["y_train"][:200], ar1["X_val"][:80], ar1["y_val"][:80])
    a, _ = predict_lstm(fit_lstm(*args, cfg).model, ar1["X_val"])
    b, _ = predict_lstm(fit_lstm(*args, cfg).model, ar1["X_val"])
    c, _ = predict_lstm(fit_lstm(*args, cfg.model_copy(update={"seed": 12})).model, ar1["X_val"])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-6


@pytest.mark.slow
def test_early_stopping_stops_when_validation_loss_rises_and_restores_best_weights() -> None:
    # 48 windows of pure noise, a wide layer and a large step: the model memorises the training set
    # and its validation loss rises after the first epoch or two.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(48 + 200, LOOKBACK, 3)).astype(np.float32)
    y = rng.normal(0.0, 0.01, len(X)).astype(np.float32)
    cfg = _config(units=(32,), learning_rate=0.05, batch_size=8, epochs=30, patience=1)
    result = fit_lstm(X[:48], y[:48], X[48:], y[48:], cfg)
    val = result.history["val_loss"]
    assert result.epochs_run < 30
    assert result.best_epoch == int(np.argmin(val))
    # Stops exactly `patience` epochs after the best one, each of which failed to improve.
    assert result.epochs_run == result.best_epoch + cfg.patience + 1
    assert all(v >= val[result.best_epoch] for v in val[result.best_epoch + 1 :])
    # The returned weights are the best epoch's, not the last epoch's.
    targets = {"ret": y[48:, None], "dir": (y[48:] > 0).astype(np.float32)[:, None]}
    evaluated = result.model.evaluate(X[48:], targets, verbose=0, return_dict=True)["loss"]
    assert evaluated == pytest.approx(val[result.best_epoch], rel=1e-4)
    assert evaluated < val[-1]


@pytest.mark.slow
def test_epoch_callback_sees_each_epoch_and_can_abort_training(ar1: dict[str, np.ndarray]) -> None:
    args = (ar1["X_train"][:160], ar1["y_train"][:160], ar1["X_val"][:60], ar1["y_val"][:60])
    seen: list[tuple[int, dict[str, float]]] = []
    result = fit_lstm(
        *args, _config(patience=10), epochs=3, epoch_callback=lambda e, logs: seen.append((e, logs))
    )
    assert [e for e, _ in seen] == [0, 1, 2] and result.epochs_run == 3
    assert all(isinstance(logs["val_loss"], float) and "loss" in logs for _, logs in seen)
    assert [logs["val_loss"] for _, logs in seen] == result.history["val_loss"]

    class Pruned(Exception):
        pass

    calls: list[int] = []

    def prune_at_second(epoch: int, logs: dict[str, float]) -> None:
        calls.append(epoch)
        if epoch == 1:
            raise Pruned(f"pruned at epoch {epoch}")

    with pytest.raises(Pruned, match="epoch 1"):
        fit_lstm(*args, _config(patience=10), epochs=6, epoch_callback=prune_at_second)
    assert calls == [0, 1]


# --- predicting, saving, plotting ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
def test_save_load_round_trip_predicts_identically(
    trained: FitResult, ar1: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = save_model(trained.model, tmp_path / "nested" / "forecaster.keras")
    assert path.is_file()
    loaded = load_model(path)
    a = predict_lstm(trained.model, ar1["X_val"])
    b = predict_lstm(loaded, ar1["X_val"])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.slow
def test_predict_lstm_shapes_batches_and_errors(trained: FitResult, ar1: dict[str, np.ndarray]) -> None:
    ret, p_up = predict_lstm(trained.model, ar1["X_val"])
    assert ret.shape == p_up.shape == (len(ar1["X_val"]),)
    assert ret.dtype == np.float64 and ((p_up >= 0) & (p_up <= 1)).all()
    small, _ = predict_lstm(trained.model, ar1["X_val"], batch_size=7)
    np.testing.assert_allclose(small, ret, atol=1e-6)
    empty = predict_lstm(trained.model, ar1["X_val"][:0])
    assert empty[0].shape == (0,)
    with pytest.raises(ValueError, match=r"\(samples, 10, 1\)"):
        predict_lstm(trained.model, ar1["X_val"][:, :5])


def test_model_paths_must_use_the_native_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.keras"):
        load_model(tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match="no saved model"):
        load_model(tmp_path / "missing.keras")


def test_learning_curve_figure_renders_png() -> None:
    history = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.95]}
    fig = learning_curve_figure(history)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()][:2] == ["train loss", "validation loss"]
    assert any("best epoch (2)" in str(line.get_label()) for line in ax.get_lines())
    with pytest.raises(ValueError, match="loss"):
        learning_curve_figure({})


# --- input errors ------------------------------------------------------------------------------


def test_fit_lstm_rejects_bad_inputs_with_clear_messages() -> None:
    X = np.zeros((20, LOOKBACK, 2), np.float32)
    y = np.zeros(20, np.float32)
    cfg = _config()
    with pytest.raises(ValueError, match="3-D windows"):
        fit_lstm(X[:, :, 0], y, X, y, cfg)
    with pytest.raises(ValueError, match=r"config\.lookback is 10"):
        fit_lstm(X[:, :5], y, X, y, cfg)
    with pytest.raises(ValueError, match="one forward log return per window"):
        fit_lstm(X, y[:5], X, y, cfg)
    with pytest.raises(ValueError, match="X_val has 1 features"):
        fit_lstm(X, y, X[:, :, :1], y, cfg)
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_lstm(bad, y, X, y, cfg)
    with pytest.raises(ValueError, match="epochs"):
        fit_lstm(X, y, X, y, cfg, epochs=0)


def test_seed_everything_validates_the_seed() -> None:
    with pytest.raises(TypeError):
        seed_everything(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2\\*\\*32"):
        seed_everything(-1)
