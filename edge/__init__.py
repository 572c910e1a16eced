"""Edge inspection of glass containers: the `edge` CLI, config, supervisor."""

__version__ = "0.1.0"
