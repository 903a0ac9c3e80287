"""Lazy package exports: a package's ``__init__`` names what users call without importing it all.

::

    __getattr__ = lazy_exports(__name__, {"run_backtest": "backtest.evaluate", ...})

The first access of a name imports its module and caches the value in the package, so
``import models`` stays light (no TensorFlow) while ``from models import register`` works.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module path) on
    first use of ``name`` and keeps the value in the package's namespace.

    Raises:
        AttributeError: (when called) a name that is not in ``exports``.
    """

    def attribute(name: str) -> Any:
        if name in exports:
            value = getattr(import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return attribute
