"""One row per container: (line_id, seq, t_gate) becomes unique.

The writer stage may now receive the same container more than once (the decision stage
re-sends what the writer did not acknowledge before a restart); the Recorder skips
containers already stored and this index makes a duplicate impossible even so. Rows
written before could hold duplicates: the first row of each is kept, the later ones are
deleted with their views, detections and labels (logged). Their image files have the same
names as the first row's, so no file is lost. The unique index starts with (line_id, seq)
and so replaces ix_containers_line_seq.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger("storage.migrations")

LATER_DUPLICATES = sa.text(
    "SELECT DISTINCT later.id FROM containers later JOIN containers first "
    "ON first.line_id = later.line_id AND first.seq = later.seq AND first.t_gate = later.t_gate "
    "AND first.id < later.id ORDER BY later.id")
VIEWS_OF = "SELECT id FROM views WHERE container_id IN :ids"


def upgrade() -> None:
    conn = op.get_bind()
    duplicates = list(conn.execute(LATER_DUPLICATES).scalars())
    for i in range(0, len(duplicates), 500):  # children first: do not rely on SQLite's foreign_keys pragma
        ids = sa.bindparam("ids", duplicates[i:i + 500], expanding=True)
        for statement in (f"DELETE FROM detections WHERE view_id IN ({VIEWS_OF})",
                          f"DELETE FROM labels WHERE view_id IN ({VIEWS_OF})",
                          "DELETE FROM views WHERE container_id IN :ids",
                          "DELETE FROM containers WHERE id IN :ids"):
            conn.execute(sa.text(statement).bindparams(ids))
    if duplicates:
        log.warning("migration 0004: deleted %d later duplicate container rows (same line, seq and gate time), "
                    "first ids %s", len(duplicates), duplicates[:20])
    op.drop_index("ix_containers_line_seq", "containers")
    op.create_index("ux_containers_line_seq_t_gate", "containers", ["line_id", "seq", "t_gate"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_containers_line_seq_t_gate", "containers")
    op.create_index("ix_containers_line_seq", "containers", ["line_id", "seq"])
