"""FKS serving: the REST service over registered models.

::

    from serving import create_app, serve
    app = create_app(settings)          # a FastAPI app; nothing is loaded until it starts
    serve("127.0.0.1", 8000)            # uvicorn, as `fks serve` and `python -m serving` run it
"""

from __future__ import annotations

from config.exports import lazy_exports

__all__ = ["create_app", "serve"]

__getattr__ = lazy_exports(__name__, {"create_app": "serving.app", "serve": "serving.server"})
