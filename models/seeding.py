"""One call that makes a training run repeatable: same seed, same data, same config => same model.

Keras and TensorFlow are imported inside the function, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import random

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed every random number generator a model touches and make TensorFlow ops deterministic.

    Sets, in order: Python's ``random``, NumPy's legacy global generator, ``keras.utils.set_random_seed``
    (which also seeds TensorFlow's global generator and resets Keras' global ``SeedGenerator`` that
    weight initialisers and dropout draw from), and turns on
    ``tf.config.experimental.enable_op_determinism()``.

    Call it immediately before building a model: weight initialisation, dropout masks and the
    per-epoch shuffle of ``model.fit`` then replay identically, so two runs with the same seed, data
    and config give identical weights and predictions (on the same machine, TensorFlow build and
    thread settings).

    Before TensorFlow is first imported it also sets ``TF_ENABLE_ONEDNN_OPTS=0`` (unless set):
    TensorFlow's oneDNN kernels warn that they "may produce slightly different numerical results
    due to floating-point round-off errors from different computation orders", and two trainings
    with the same seed in one process were seen to differ in the last digits of their metrics.

    Cost: op determinism is process-wide and cannot be switched off again. It forces deterministic
    (often slower) kernels, most visibly on GPU (deterministic reductions and scatters, no
    autotuned cuDNN algorithms) and makes ``tf.data`` keep element order in parallel maps. The few
    ops without a deterministic implementation then raise ``UnimplementedError`` instead of silently
    differing between runs. On the small CPU LSTMs of FKS the slowdown is negligible.

    Args:
        seed: A non-negative integer (NumPy requires ``0 <= seed < 2**32``).

    Raises:
        TypeError: if ``seed`` is not an int (``bool`` is refused too).
        ValueError: if ``seed`` is outside ``[0, 2**32)``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}; pick a smaller non-negative integer")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN kernels round differently run to run
    import keras
    import numpy as np
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
