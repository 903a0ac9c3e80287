"""``python -m flows.cli``: the ``fks`` command."""

from flows.cli import entry

entry()
