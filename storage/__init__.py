"""Decisions and images on disk: SQLAlchemy models, image store, captured batches, labels."""
