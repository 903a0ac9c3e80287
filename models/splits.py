"""Leak-free sample splits: chronological train/validation/test and walk-forward folds.

Samples are indexed ``0 .. n-1`` in time order. Sample ``i`` is the window of ``lookback``
feature rows ending at bar ``t_i`` (``t_i = t_0 + i``: consecutive windows of consecutive rows,
see ``features.make_windows``); its label is the forward log return from ``t_i`` to
``t_i + horizon``, i.e. it is computed from bars ``t_i .. t_i + horizon``.

Two blocks of samples leak into each other when the *label* of a sample of the earlier block
uses a bar that is a *feature row* of a sample of the later block: sample ``i`` (earlier) and
sample ``j`` (later) are disjoint iff ``i + horizon < j - lookback + 1``. Between consecutive
blocks it is enough to drop ``lookback + horizon - 1`` samples; the platform drops ``purge =
lookback + horizon`` (``ForecasterConfig.purge``), one more for safety.

::

    from models.splits import chronological_split, walk_forward_folds, check_no_overlap

    split = chronological_split(len(windows), val_fraction=0.15, test_fraction=0.15, purge=cfg.purge)
    X_train, X_val, X_test = windows[split.train], windows[split.val], windows[split.test]
    folds = walk_forward_folds(split.val.stop, folds=3, purge=cfg.purge)   # train+val only
    check_no_overlap(split, lookback=cfg.lookback, horizon=cfg.horizon)
    check_no_overlap(folds, lookback=cfg.lookback, horizon=cfg.horizon)

All slices are plain ``slice(start, stop)`` objects (step ``None``) over sample positions, so
they index numpy arrays, pandas ``.iloc`` and Python lists alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "Fold",
    "LeakageError",
    "Split",
    "check_no_overlap",
    "chronological_split",
    "feature_rows",
    "walk_forward_folds",
]

# Each of validation and test needs at least this many samples (a correlation needs two).
_MIN_EVAL_SAMPLES = 2
_EPS = 1e-9


class LeakageError(ValueError):
    """A label window of an earlier block reaches a feature window of a later block."""


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_slice(name: str, block: object) -> slice:
    if not isinstance(block, slice):
        raise ValueError(f"{name} must be a slice over sample positions, got {type(block).__name__}")
    if block.step not in (None, 1):
        raise ValueError(f"{name} must be a contiguous slice (step None), got step {block.step!r}")
    if not (_is_int(block.start) and _is_int(block.stop)):
        raise ValueError(f"{name} needs explicit integer start and stop, got {block!r}")
    if not 0 <= block.start <= block.stop:
        raise ValueError(f"{name} must satisfy 0 <= start <= stop, got {block!r}")
    return block


def _size(block: slice) -> int:
    return int(block.stop) - int(block.start)


@dataclass(frozen=True)
class Split:
    """A chronological train / validation / test split over sample positions.

    Attributes:
        train: samples to fit on (the earliest).
        val: samples for early stopping and model selection (after ``train`` and a purge gap).
        test: held-out samples, touched once for the reported metrics (the latest).

    Raises:
        ValueError: a block is not a contiguous ``slice(start, stop)`` with ``0 <= start <= stop``,
            or the blocks are not in the order train, val, test without overlapping.
    """

    train: slice
    val: slice
    test: slice

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            _check_slice(name, getattr(self, name))
        if not self.train.stop <= self.val.start or not self.val.stop <= self.test.start:
            raise ValueError(
                f"blocks must be in time order train < val < test without overlap, got train={self.train}, "
                f"val={self.val}, test={self.test}"
            )

    @property
    def sizes(self) -> dict[str, int]:
        """Samples per block: ``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": _size(self.train), "val": _size(self.val), "test": _size(self.test)}


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: fit on ``train``, evaluate on the later ``val``.

    Raises:
        ValueError: a block is not a contiguous ``slice(start, stop)``, or ``val`` starts before
            ``train`` ends.
    """

    train: slice
    val: slice

    def __post_init__(self) -> None:
        _check_slice("train", self.train)
        _check_slice("val", self.val)
        if not self.train.stop <= self.val.start:
            raise ValueError(f"val must start after train ends, got train={self.train}, val={self.val}")

    @property
    def sizes(self) -> dict[str, int]:
        """Samples per block: ``{"train": ..., "val": ...}``."""
        return {"train": _size(self.train), "val": _size(self.val)}


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    fraction = float(value)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return fraction


def _min_train(purge: int) -> int:
    return max(2 * purge, 2)


def chronological_split(n_samples: int, *, val_fraction: float, test_fraction: float, purge: int) -> Split:
    """Split ``n_samples`` samples into train, validation and test, in time order, with purge gaps.

    Layout: ``[train][purge dropped][val][purge dropped][test]``, with
    ``n_val = floor(n_samples * val_fraction)``, ``n_test = floor(n_samples * test_fraction)``,
    ``n_train = n_samples - n_val - n_test - 2 * purge``; the test block ends at ``n_samples``.

    Args:
        n_samples: number of samples (windows), >= 1.
        val_fraction: share of *all* samples for validation, in (0, 1).
        test_fraction: share of *all* samples for test, in (0, 1).
        purge: samples dropped between train and val and between val and test, >= 0; use
            ``lookback + horizon`` (``ForecasterConfig.purge``) so no window or label straddles
            two blocks.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: a bad argument; ``val_fraction + test_fraction >= 1``; fewer than 2 samples
            in val or test; or fewer than ``max(2 * purge, 2)`` training samples left (the
            message gives the numbers and how many samples would be needed).
    """
    n = _check_count("n_samples", n_samples, 1)
    val_f = _check_fraction("val_fraction", val_fraction)
    test_f = _check_fraction("test_fraction", test_fraction)
    gap = _check_count("purge", purge, 0)
    if val_f + test_f >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_f} + {test_f}")
    n_val = math.floor(n * val_f + _EPS)
    n_test = math.floor(n * test_f + _EPS)
    n_train = n - n_val - n_test - 2 * gap
    min_train = _min_train(gap)
    if n_val < _MIN_EVAL_SAMPLES or n_test < _MIN_EVAL_SAMPLES or n_train < min_train:
        # Smallest n with enough of everything (the fractions round down).
        need = max(
            math.ceil(_MIN_EVAL_SAMPLES / val_f),
            math.ceil(_MIN_EVAL_SAMPLES / test_f),
            math.ceil((min_train + 2 * gap + 2) / (1.0 - val_f - test_f)),
        )
        raise ValueError(
            f"too few samples for a purged split: n_samples={n} gives train={n_train}, val={n_val}, "
            f"test={n_test} with purge={gap} twice; need train >= {min_train} (2 * purge) and "
            f"val, test >= {_MIN_EVAL_SAMPLES}. Use more data (about {need} samples or more), a shorter "
            "lookback/horizon, or other fractions"
        )
    val_start = n_train + gap
    test_start = val_start + n_val + gap
    return Split(
        train=slice(0, n_train),
        val=slice(val_start, val_start + n_val),
        test=slice(test_start, test_start + n_test),
    )


def walk_forward_folds(
    n_samples: int,
    *,
    folds: int,
    purge: int,
    mode: Literal["expanding", "rolling"] = "expanding",
    min_train_fraction: float = 0.4,
) -> list[Fold]:
    """Walk-forward folds over samples ``0 .. n_samples-1`` (pass train+val, never the test block).

    The validation blocks are consecutive, of equal length ``V``, and tile the end of the span:
    the last one ends at ``n_samples``. Each fold trains on samples that end ``purge`` samples
    before its validation block starts:

    * ``expanding``: train is ``[0, val.start - purge)``, so it grows fold after fold (a fold's
      train includes the earlier folds' validation samples, minus the purge).
    * ``rolling``: train has a fixed length ``n_train0`` and slides with the validation block:
      ``[val.start - purge - n_train0, val.start - purge)``.

    With ``n_train0 = floor(n_samples * min_train_fraction)`` and
    ``V = (n_samples - n_train0 - purge) // folds``; the remainder of that division goes to the
    first training window, so ``n_train0`` may grow by up to ``folds - 1`` samples.

    Args:
        n_samples: samples in the span, e.g. ``split.val.stop`` of a :func:`chronological_split`.
        folds: number of folds, >= 1.
        purge: samples dropped between each train and its validation block, >= 0
            (``lookback + horizon``).
        mode: ``"expanding"`` or ``"rolling"``.
        min_train_fraction: share of the span in the first training window, in (0, 1).

    Returns:
        ``folds`` :class:`Fold` objects, in time order, validation blocks not overlapping.

    Raises:
        ValueError: a bad argument, or the span is too short: fewer than ``max(2 * purge, 2)``
            samples in the first training window or fewer than 2 per validation block (the
            message gives the numbers).
    """
    n = _check_count("n_samples", n_samples, 1)
    k = _check_count("folds", folds, 1)
    gap = _check_count("purge", purge, 0)
    if mode not in ("expanding", "rolling"):
        raise ValueError(f"mode must be 'expanding' or 'rolling', got {mode!r}")
    train_f = _check_fraction("min_train_fraction", min_train_fraction)
    n_train0 = math.floor(n * train_f + _EPS)
    rest = n - n_train0 - gap
    val_len = rest // k if rest > 0 else 0
    min_train = _min_train(gap)
    if n_train0 < min_train or val_len < _MIN_EVAL_SAMPLES:
        raise ValueError(
            f"too few samples for {k} walk-forward folds: n_samples={n} gives a first train window of "
            f"{n_train0} (min_train_fraction={train_f}) and validation blocks of {max(val_len, 0)} after "
            f"purge={gap}; need train >= {min_train} and each validation block >= {_MIN_EVAL_SAMPLES}. "
            "Use fewer folds, more data or a shorter lookback/horizon"
        )
    n_train0 += rest - k * val_len
    first_val = n_train0 + gap
    out: list[Fold] = []
    for i in range(k):
        val_start = first_val + i * val_len
        train_stop = val_start - gap
        train_start = 0 if mode == "expanding" else train_stop - n_train0
        out.append(Fold(train=slice(train_start, train_stop), val=slice(val_start, val_start + val_len)))
    return out


def feature_rows(block: slice, lookback: int) -> slice:
    """Rows of the aligned feature matrix that the windows of ``block`` read.

    Sample ``i`` is the window ``X[i : i + lookback]`` (``features.make_windows``), so the samples
    ``block.start .. block.stop-1`` read rows ``block.start .. block.stop + lookback - 2``. Fit a
    scaler on ``X[feature_rows(split.train, lookback)]``: train rows only.

    Raises:
        ValueError: ``block`` is not a contiguous slice or ``lookback`` < 1.
    """
    _check_slice("block", block)
    lb = _check_count("lookback", lookback, 1)
    if block.start == block.stop:
        return slice(block.start, block.start)
    return slice(int(block.start), int(block.stop) + lb - 1)


def _ordered_pairs(split_or_folds: Split | Fold | Sequence[Fold]) -> list[tuple[str, slice, str, slice]]:
    if isinstance(split_or_folds, Split):
        s = split_or_folds
        return [
            ("train", s.train, "val", s.val),
            ("val", s.val, "test", s.test),
            ("train", s.train, "test", s.test),
        ]
    if isinstance(split_or_folds, Fold):
        return [("train", split_or_folds.train, "val", split_or_folds.val)]
    if isinstance(split_or_folds, Sequence) and not isinstance(split_or_folds, str | bytes):
        pairs: list[tuple[str, slice, str, slice]] = []
        for i, fold in enumerate(split_or_folds):
            if not isinstance(fold, Fold):
                raise ValueError(f"item {i} is a {type(fold).__name__}, expected a Fold")
            pairs.append((f"fold {i} train", fold.train, f"fold {i} val", fold.val))
        return pairs
    raise ValueError(f"expected a Split, a Fold or a list of Folds, got {type(split_or_folds).__name__}")


def check_no_overlap(split_or_folds: Split | Fold | Sequence[Fold], lookback: int, horizon: int) -> None:
    """Raise unless no label of an earlier block reaches a feature window of a later block.

    For each ordered pair (train→val, val→test and train→test of a :class:`Split`; train→val of
    each :class:`Fold`), the last sample ``i`` of the earlier block has its label computed from
    bars ``i .. i + horizon`` (in sample coordinates) and the first sample ``j`` of the later block
    reads feature rows ``j - lookback + 1 .. j``; they must be disjoint:
    ``i + horizon < j - lookback + 1``, i.e. at least ``lookback + horizon - 1`` samples dropped
    between the blocks. Empty blocks are skipped. Walk-forward folds may share samples across
    folds (an expanding train contains earlier validation blocks); only each fold's own pair is
    checked.

    Args:
        split_or_folds: a :class:`Split`, a :class:`Fold` or a sequence of folds.
        lookback: feature rows per window, >= 1.
        horizon: label horizon in bars, >= 1.

    Raises:
        LeakageError: (a ``ValueError``) a pair leaks; the message names the blocks and the gap.
        ValueError: a bad argument.
    """
    lb = _check_count("lookback", lookback, 1)
    h = _check_count("horizon", horizon, 1)
    need = lb + h - 1
    for early_name, early, late_name, late in _ordered_pairs(split_or_folds):
        if _size(early) == 0 or _size(late) == 0:
            continue
        last, first = int(early.stop) - 1, int(late.start)
        if last >= first:
            raise LeakageError(f"{early_name} {early} does not end before {late_name} {late} starts")
        if last + h >= first - lb + 1:
            raise LeakageError(
                f"{early_name} leaks into {late_name}: the label of sample {last} (bars up to {last + h}) "
                f"reaches the window of sample {first} (rows from {first - lb + 1}); the gap is "
                f"{first - last - 1} samples but lookback={lb} and horizon={h} need >= {need} "
                "(use purge = lookback + horizon)"
            )
