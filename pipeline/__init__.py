"""ZeroMQ stages: inference workers, decisions, reject relay, accounting."""
