"""The background writer of table ``predictions``: requests hand rows over, never wait for the store.

:meth:`PredictionWriter.offer` puts rows on a bounded queue and returns at once; a daemon thread
takes up to ``batch_size`` rows at a time and inserts them in one transaction
(:func:`storage.predictions.record_predictions`). When the queue is full the rows are dropped and
counted (``dropped``; the service exports it as ``fks_predictions_dropped_total``): a slow or
locked store costs records, never latency. A failed insert is logged and its rows are counted as
dropped too; the writer goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from storage.predictions import Prediction, record_predictions

log = logging.getLogger(__name__)

_STOP = object()


class PredictionWriter:
    """Writes :class:`storage.predictions.Prediction` rows from a background thread.

    Args:
        engine: returns the store engine (called in the writer thread).
        capacity: most rows waiting; more are dropped.
        batch_size: most rows per insert.
        on_drop: called with the number of rows dropped (metrics hook).
    """

    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._batch_size = batch_size
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0

    def _drop(self, n: int) -> None:
        with self._lock:
            self.dropped += n
        if self._on_drop is not None:
            self._on_drop(n)

    def offer(self, rows: Sequence[Prediction]) -> None:
        """Queue ``rows`` without blocking; rows that do not fit are dropped and counted."""
        self._start()
        for i, row in enumerate(rows):
            try:
                self._queue.put_nowait(row)
            except queue.Full:
                self._drop(len(rows) - i)
                return

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="fks-predictions", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            stop = first is _STOP
            batch = [] if stop else [first]
            while not stop and len(batch) < self._batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            rows = [r for r in batch if isinstance(r, Prediction)]
            if rows:
                try:
                    with self._engine().begin() as conn:
                        record_predictions(conn, rows)
                    with self._lock:
                        self.written += len(rows)
                except Exception as exc:  # the store is down or locked: count, log, go on
                    log.warning("could not store %d predictions: %s", len(rows), exc)
                    self._drop(len(rows))
            for _ in batch:
                self._queue.task_done()
            if stop:
                self._queue.task_done()
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written (or dropped); False when ``timeout`` passed."""
        if self._thread is None:
            return True
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is None or not self._thread.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
