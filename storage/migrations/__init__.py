"""Alembic revisions of the storage schema, shipped inside the package (see storage.db.upgrade)."""
