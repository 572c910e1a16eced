"""What a user can fix on the storage side: an unreachable database, a bad batch folder."""


class StorageError(Exception):
    """A database, image store or batch problem with a message naming the path and the fix."""
