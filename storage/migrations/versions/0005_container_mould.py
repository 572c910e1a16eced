"""The mould of each container: section and cavity of the IS machine (nullable).

A line with a mould number reader (the PLC's line carries them, gate.message) or a
simulated machine (line.machine) records which mould made each container; rows written
before, and lines without a reader, keep NULL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("containers") as batch:
        batch.add_column(sa.Column("section", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cavity", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("containers") as batch:
        batch.drop_column("cavity")
        batch.drop_column("section")
