"""``python -m serving [--host 127.0.0.1] [--port 8000] [--workers N]``: the REST service."""

from __future__ import annotations

import argparse

from serving.server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and serve (see :func:`serving.server.serve`)."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
