"""A broker's fill ids are unique per account: ``fills`` is unique on ``(account, broker_fill_id)``
instead of ``broker_fill_id`` alone.

The paper broker names a fill after its order's client order id (``<client order id>-<n>``), and
the desk's client order ids are unique per account: two paper accounts trading the same symbol on
the same bars got the same fill ids, and the second account's fill was refused as a conflict with
the first's (``FillConflict``, the desk stopped). A real broker's execution ids are unique within
the account too.

Downgrading restores the global constraint; it refuses, changing nothing, while two accounts hold
a fill of the same id (the message names them).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Replace the unique constraint (every row kept)."""
    with op.batch_alter_table("fills") as batch:
        batch.drop_constraint("uq_fills_broker_fill_id", type_="unique")
        batch.create_unique_constraint("uq_fills_account_broker_fill_id", ["account", "broker_fill_id"])


def downgrade() -> None:
    """Restore the global constraint; refused, before any change, when two accounts share a fill id."""
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT broker_fill_id FROM fills GROUP BY broker_fill_id HAVING COUNT(*) > 1 "
                "ORDER BY broker_fill_id LIMIT 5"
            )
        )
        .scalars()
        .all()
    )
    if shared:
        raise RuntimeError(
            "cannot downgrade below 0017: fill id(s) "
            + ", ".join(repr(s) for s in shared)
            + " belong to more than one account; before 0017 a fill id was unique across accounts "
            "(delete or rename those fills of all but one account first)"
        )
    with op.batch_alter_table("fills") as batch:
        batch.drop_constraint("uq_fills_account_broker_fill_id", type_="unique")
        batch.create_unique_constraint("uq_fills_broker_fill_id", ["broker_fill_id"])
