"""The class threshold each detection was compared with (nullable).

Recorded per detection, not per container: it is the threshold of the comparison that
made the detection count, so it stays right when two workers run different models for
one container (a model switch) and needs no JSON column. `edge samples export` draws its
pre-annotations at it; rows written before keep NULL and use the configured thresholds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("detections") as batch:
        batch.add_column(sa.Column("threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detections") as batch:
        batch.drop_column("threshold")
