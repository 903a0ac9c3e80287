"""The errors of the Parquet lake, shared by its object stores, codec and reader/writer."""

from __future__ import annotations


class LakeError(ValueError):
    """The lake cannot be used as configured or holds something unreadable; the message says how to fix it."""


class LakeUnreachable(LakeError):
    """The lake's storage could not be reached (network, endpoint down); retrying may succeed."""
