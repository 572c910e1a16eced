"""What a user can fix on the model side: a missing or corrupt model file, bad input."""


class EngineError(Exception):
    """A model, runtime or training problem with a message naming the file and the fix."""
