"""Labels from labelling tools, line events, and what the disk quota needs.

A labelled view is training truth: the quota never purges it, hence `views.labelled`
and an index that finds the oldest unlabelled stored image in one seek.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("views") as batch:
        batch.add_column(sa.Column("labelled", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_views_purge", "views", ["image_state", "labelled", "id"])
    op.create_table(
        "labels",
        sa.Column("id", RowId, primary_key=True),
        sa.Column("view_id", sa.BigInteger(), sa.ForeignKey("views.id", ondelete="CASCADE"), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        *(sa.Column(c, sa.Float(), nullable=False) for c in ("x1", "y1", "x2", "y2")),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_labels_view_id", "labels", ["view_id"])
    op.create_table(
        "events",
        sa.Column("id", RowId, primary_key=True),
        sa.Column("t", sa.DateTime(), nullable=False),
        sa.Column("line_id", sa.String(64)),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64)),
        sa.Column("container_seq", sa.BigInteger()),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("ix_events_t", "events", ["t"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("labels")
    op.drop_index("ix_views_purge", "views")
    with op.batch_alter_table("views") as batch:
        batch.drop_column("labelled")
