"""What a user can fix in the pipeline: an endpoint in use, a relay port that won't open."""


class PipelineError(Exception):
    """A pipeline, relay or supervisor problem with a message naming the part and the fix."""
