"""Containers, their six views, detections and model versions (the first release).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", RowId, primary_key=True),
        sa.Column("version", sa.String(64), nullable=False, unique=True),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "containers",
        sa.Column("id", RowId, primary_key=True),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("t_gate", sa.DateTime(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("model_version_id", sa.BigInteger(), sa.ForeignKey("model_versions.id")),
        sa.Column("n_views", sa.Integer(), nullable=False),
    )
    op.create_index("ix_containers_t_gate", "containers", ["t_gate"])
    op.create_index("ix_containers_line_seq", "containers", ["line_id", "seq"])
    op.create_table(
        "views",
        sa.Column("id", RowId, primary_key=True),
        sa.Column("container_id", sa.BigInteger(), sa.ForeignKey("containers.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("view", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("t_capture", sa.DateTime()),
        sa.Column("missing", sa.String(128)),
        sa.Column("image_file", sa.String(255)),
        sa.Column("image_bytes", sa.BigInteger(), nullable=False),
        sa.Column("image_state", sa.String(8), nullable=False),
    )
    op.create_index("ix_views_container_id", "views", ["container_id"])
    op.create_table(
        "detections",
        sa.Column("id", RowId, primary_key=True),
        sa.Column("view_id", sa.BigInteger(), sa.ForeignKey("views.id", ondelete="CASCADE"), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        *(sa.Column(c, sa.Float(), nullable=False) for c in ("x1", "y1", "x2", "y2")),
    )
    op.create_index("ix_detections_view_id", "detections", ["view_id"])


def downgrade() -> None:
    for table in ("detections", "views", "containers", "model_versions"):
        op.drop_table(table)
