"""Running the REST service: uvicorn over :func:`serving.app.app_from_env`."""

from __future__ import annotations


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the registered models on ``host:port`` with ``workers`` processes until stopped.

    Raises:
        ValueError: ``port`` outside 1..65535 or ``workers`` < 1.
    """
    import uvicorn

    if not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, got {port}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    uvicorn.run("serving.app:app_from_env", factory=True, host=host, port=port, workers=workers)
