"""The LSTM forecaster: build, train with early stopping, predict, save/load, plot the learning curve.

A sample is a window of ``lookback`` feature rows ending at bar t, shape ``(lookback, n_features)``,
float32 and already scaled (z-scored on the training split by the feature pipeline; an LSTM
saturates on raw prices). Its target is the forward log return from t to t + horizon.

The network has one input and two heads:

- ``ret``: linear, the forecast forward log return (mean squared error);
- ``dir``: sigmoid, P(forward return > 0) (binary cross-entropy, loss weight :data:`DIR_LOSS_WEIGHT`).

Log returns are small (about 1e-2 a day), so the ``ret`` head predicts in units of the training
targets' root mean square and a ``Rescaling`` layer inside the model turns that back into a log
return; its loss is weighted by ``1 / scale**2`` so both heads train on comparable scales. The
saved model therefore outputs plain log returns with no side information.

Training is deterministic: :func:`fit_lstm` calls :func:`models.seeding.seed_everything` first, so
the same config and data give the same predictions.

Keras, TensorFlow and matplotlib are imported inside the functions; ``import
models.forecaster.network`` is cheap.

Example::

    result = fit_lstm(X_train, y_train, X_val, y_val, ForecasterConfig(lookback=30))
    ret, p_up = predict_lstm(result.model, X_test)
    save_model(result.model, "forecaster.keras")
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from config.models import ForecasterConfig
from models.seeding import seed_everything

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

__all__ = [
    "DIR_LOSS_WEIGHT",
    "EpochCallback",
    "FitResult",
    "build_lstm",
    "fit_lstm",
    "learning_curve_figure",
    "load_model",
    "predict_lstm",
    "save_model",
]

DIR_LOSS_WEIGHT = 0.1
"""Weight of the direction head's binary cross-entropy in the total loss (the ``ret`` head weighs 1)."""

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after each epoch with the 0-based epoch and its logs (``loss``, ``val_loss``, ...)."""


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN kernels round differently run to run
    import keras

    return keras


@dataclass(frozen=True, eq=False)
class FitResult:
    """What :func:`fit_lstm` returns.

    Attributes:
        model: the trained, compiled Keras model, carrying the weights of the best epoch
            (lowest ``val_loss``), not those of the last one.
        history: per-epoch logs, one float per epoch run under each key: ``loss``, ``ret_loss``,
            ``dir_loss``, ``dir_accuracy`` and the same with a ``val_`` prefix. ``loss`` is the
            weighted total: ``ret_loss / scale**2 + 0.1 * dir_loss``, see :func:`build_lstm`.
        best_epoch: 0-based index of the epoch whose weights the model carries, so
            ``history["val_loss"][best_epoch] == min(history["val_loss"])``.
        epochs_run: how many epochs ran (``len(history["loss"])``); fewer than asked when early
            stopping fired.
    """

    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int

    @property
    def best_val_loss(self) -> float:
        """The validation loss of the returned weights."""
        return self.history["val_loss"][self.best_epoch]


def build_lstm(n_features: int, config: ForecasterConfig, *, target_scale: float = 1.0) -> keras.Model:
    """Build and compile the two-headed LSTM forecaster (weights drawn from the current seed state).

    Architecture: ``Input(lookback, n_features)`` named ``window`` -> for each size in
    ``config.units`` an ``LSTM`` (``return_sequences`` on all but the last) followed by
    ``Dropout(config.dropout)`` -> two heads on the last hidden state:

    - ``ret``: ``Dense(1)`` then ``Rescaling(target_scale)``: the forecast forward log return;
      loss mean squared error with weight ``1 / target_scale**2`` (i.e. MSE in standardised units).
    - ``dir``: ``Dense(1, sigmoid)``: P(forward log return > 0); loss binary cross-entropy with
      weight :data:`DIR_LOSS_WEIGHT`, metric ``accuracy``.

    The model's outputs are a dict ``{"ret": (n, 1), "dir": (n, 1)}``. Optimiser: Adam with
    ``config.learning_rate``. For repeatable weights call
    :func:`models.seeding.seed_everything` first (:func:`fit_lstm` does).

    Args:
        n_features: columns per window row, at least 1.
        config: uses ``lookback``, ``units``, ``dropout`` and ``learning_rate``.
        target_scale: typical size of the target in log-return units (``fit_lstm`` passes the
            root mean square of the training targets); must be finite and positive.

    Returns:
        A compiled ``keras.Model``.

    Raises:
        ValueError: ``n_features < 1`` or ``target_scale`` not finite and positive.
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int | np.integer) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    if not (math.isfinite(target_scale) and target_scale > 0):
        raise ValueError(f"target_scale must be finite and > 0, got {target_scale!r}")
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=(config.lookback, int(n_features)), name="window")
    x = inputs
    for i, units in enumerate(config.units):
        last = i == len(config.units) - 1
        x = layers.LSTM(units, return_sequences=not last, name=f"lstm_{i}")(x)
        x = layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    ret_std = layers.Dense(1, name="ret_standardized")(x)
    ret = layers.Rescaling(scale=float(target_scale), offset=0.0, name="ret")(ret_std)
    direction = layers.Dense(1, activation="sigmoid", name="dir")(x)
    model = keras.Model(inputs=inputs, outputs={"ret": ret, "dir": direction}, name="fks_forecaster")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss={"ret": "mse", "dir": "binary_crossentropy"},
        loss_weights={"ret": 1.0 / float(target_scale) ** 2, "dir": DIR_LOSS_WEIGHT},
        metrics={"dir": [keras.metrics.BinaryAccuracy(name="accuracy")]},
    )
    return model


def _check_xy(X: Any, y: Any, name: str, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(
            f"X_{name} must be 3-D windows (samples, lookback, features), got shape {X.shape}; "
            "build them with features.windows.make_windows"
        )
    if X.shape[0] == 0:
        raise ValueError(f"X_{name} has no samples")
    if X.shape[1] != lookback:
        raise ValueError(
            f"X_{name} windows have {X.shape[1]} rows but config.lookback is {lookback}; "
            "cut the windows with the config's lookback"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y_{name} must hold one forward log return per window ({X.shape[0]}), got {y.shape}"
        )
    if not np.isfinite(X).all():
        raise ValueError(f"X_{name} contains NaN or inf; drop the warm-up rows of the indicators first")
    if not np.isfinite(y).all():
        raise ValueError(f"y_{name} contains NaN or inf; drop the last `horizon` rows, which have no label")
    return X, y


def fit_lstm(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    config: ForecasterConfig,
    *,
    epoch_callback: EpochCallback | None = None,
    epochs: int | None = None,
) -> FitResult:
    """Train the forecaster with early stopping on the validation loss; deterministic given the seed.

    Steps: ``seed_everything(config.seed)``; build the model with :func:`build_lstm` (target scale =
    root mean square of ``y_train``); fit with Adam, ``config.batch_size``, the training samples
    shuffled each epoch (seeded); stop when ``val_loss`` has not improved for ``config.patience``
    epochs and restore the weights of the best epoch (also when all epochs ran).
    The direction target is derived here: ``y > 0``.

    Args:
        X_train: float windows, shape ``(samples, config.lookback, features)``, scaled.
        y_train: forward log returns, shape ``(samples,)``, aligned with ``X_train``.
        X_val: validation windows, same lookback and features, later in time than the training
            ones (with the purge gap of ``config.purge`` samples).
        y_val: validation forward log returns.
        config: the experiment; uses lookback, units, dropout, learning_rate, batch_size, epochs,
            patience and seed.
        epoch_callback: called as ``epoch_callback(epoch, logs)`` after every epoch, with the 0-based
            epoch and the epoch's logs as floats (``loss``, ``val_loss``, ``ret_loss``, ...). It may
            stop training by raising (e.g. ``optuna.TrialPruned``): the exception propagates out of
            ``fit_lstm`` unchanged and no result is returned.
        epochs: overrides ``config.epochs`` (the tuner trains shorter), at least 1.

    Returns:
        A :class:`FitResult` holding the model with the best epoch's weights and the history.

    Raises:
        ValueError: bad shapes (not 3-D, lookback other than ``config.lookback``, feature counts
            that differ between train and validation, labels of another length), NaN/inf, or
            ``epochs < 1``.
    """
    n_epochs = config.epochs if epochs is None else epochs
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {n_epochs!r}")
    X_train, y_train = _check_xy(X_train, y_train, "train", config.lookback)
    X_val, y_val = _check_xy(X_val, y_val, "val", config.lookback)
    if X_val.shape[2] != X_train.shape[2]:
        raise ValueError(
            f"X_val has {X_val.shape[2]} features but X_train has {X_train.shape[2]}; "
            "use the same feature set for both"
        )

    seed_everything(config.seed)
    keras = _keras()
    rms = float(np.sqrt(np.mean(np.square(y_train, dtype=np.float64))))
    model = build_lstm(X_train.shape[2], config, target_scale=rms if rms > 0 else 1.0)

    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", mode="min", patience=config.patience, restore_best_weights=True
    )
    callbacks: list[Any] = [stopper]
    if epoch_callback is not None:
        callbacks.append(_epoch_hook(epoch_callback))

    def targets(y: np.ndarray) -> dict[str, np.ndarray]:
        return {"ret": y[:, None], "dir": (y > 0).astype(np.float32)[:, None]}

    hist = model.fit(
        X_train,
        targets(y_train),
        validation_data=(X_val, targets(y_val)),
        epochs=n_epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    history = {key: [float(v) for v in values] for key, values in hist.history.items()}
    epochs_run = len(history["loss"])
    val_loss = history["val_loss"]
    best_epoch = int(np.argmin(val_loss))  # EarlyStopping keeps the first minimum too
    return FitResult(model=model, history=history, best_epoch=best_epoch, epochs_run=epochs_run)


def _epoch_hook(fn: EpochCallback) -> Any:
    """A Keras callback that calls ``fn(epoch, logs)`` after each epoch (class built lazily)."""
    base = _keras().callbacks.Callback

    class _EpochHook(base):  # type: ignore[misc, valid-type]
        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            fn(int(epoch), {k: float(v) for k, v in (logs or {}).items()})

    return _EpochHook()


def predict_lstm(
    model: keras.Model, X: np.ndarray, *, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Forecast with a trained forecaster, quietly and in batches.

    Args:
        model: a model from :func:`build_lstm`, :func:`fit_lstm` or :func:`load_model`.
        X: windows, shape ``(samples, lookback, features)`` matching the model's input.
        batch_size: windows per forward pass.

    Returns:
        ``(ret, p_up)``: two float64 arrays of shape ``(samples,)``: the forecast forward log
        return and the probability that it is positive.

    Raises:
        ValueError: ``X`` is not 3-D or its window shape differs from the model's input.
    """
    X = np.asarray(X, dtype=np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    if X.ndim != 3 or X.shape[1:] != expected:
        raise ValueError(
            f"X must have shape (samples, {expected[0]}, {expected[1]}) for this model, got {X.shape}"
        )
    if X.shape[0] == 0:
        return np.empty(0), np.empty(0)
    out = model.predict(X, batch_size=batch_size, verbose=0)
    if not isinstance(out, Mapping):
        out = dict(zip(model.output_names, out, strict=True))
    ret = np.asarray(out["ret"], dtype=np.float64).reshape(-1)
    p_up = np.asarray(out["dir"], dtype=np.float64).reshape(-1)
    return ret, p_up


def compiled_forward(model: keras.Model) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The network's forward pass as one compiled graph call, without ``predict``'s per-call setup.

    For serving: the returned function takes windows ``(samples, lookback, features)`` (any
    number of samples; one graph for every batch size) and returns ``(ret, p_up)`` as
    :func:`predict_lstm` does, the same numbers to float32 rounding.

    Raises:
        ValueError: (when called) windows of another shape than the model's input.
    """
    import tensorflow as tf

    lookback, features = (int(d) for d in model.inputs[0].shape[1:])
    signature = [tf.TensorSpec(shape=(None, lookback, features), dtype=tf.float32)]

    @tf.function(input_signature=signature, reduce_retracing=True)
    def _call(x: Any) -> Any:
        out = model(x, training=False)
        if not isinstance(out, Mapping):
            out = dict(zip(model.output_names, out, strict=True))
        return out["ret"], out["dir"]

    def forward(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3 or X.shape[1:] != (lookback, features):
            expected = f"(samples, {lookback}, {features})"
            raise ValueError(f"X must have shape {expected} for this model, got {X.shape}")
        if X.shape[0] == 0:
            return np.empty(0), np.empty(0)
        ret, p_up = _call(tf.constant(X))
        return (
            np.asarray(ret, dtype=np.float64).reshape(-1),
            np.asarray(p_up, dtype=np.float64).reshape(-1),
        )

    return forward


def _keras_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.suffix != ".keras":
        raise ValueError(f"model files use the native Keras format and must end in '.keras', got {str(p)!r}")
    return p


def save_model(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Save a model in the native ``.keras`` format (architecture, weights, optimiser state).

    Creates missing parent folders and overwrites an existing file.

    Returns:
        The path written.

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
    """
    p = _keras_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model.save(p, overwrite=True)
    return p


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a model saved by :func:`save_model`; it predicts exactly as the saved one did.

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
        FileNotFoundError: no file at ``path``.
    """
    p = _keras_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no saved model at {str(p)!r}; train one first or check the path")
    return _keras().models.load_model(p)


def learning_curve_figure(history: Mapping[str, Sequence[float]], *, best_epoch: int | None = None) -> Figure:
    """Plot training and validation loss per epoch, e.g. for an MLflow artifact.

    Draws on a plain ``matplotlib.figure.Figure`` (no pyplot, no display needed); save it with
    ``fig.savefig(path_or_buffer, format="png")``. Epochs are numbered from 1 on the x axis. A dotted
    vertical line marks the best epoch: ``best_epoch`` (0-based) if given, else the minimum of
    ``val_loss``.

    Args:
        history: ``FitResult.history`` or any mapping with a ``loss`` list and optionally
            ``val_loss``.
        best_epoch: 0-based epoch to mark.

    Raises:
        ValueError: no ``loss`` entry or it is empty.
    """
    from matplotlib.figure import Figure

    loss = list(history.get("loss", []))
    if not loss:
        raise ValueError("history needs a non-empty 'loss' list (FitResult.history)")
    val_loss = list(history.get("val_loss", []))
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(range(1, len(loss) + 1), loss, marker="o", label="train loss")
    if val_loss:
        ax.plot(range(1, len(val_loss) + 1), val_loss, marker="o", label="validation loss")
        if best_epoch is None:
            best_epoch = int(np.argmin(val_loss))
    if best_epoch is not None:
        ax.axvline(best_epoch + 1, linestyle=":", color="grey", label=f"best epoch ({best_epoch + 1})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("LSTM forecaster learning curve")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
