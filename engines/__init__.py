"""The RTVP detector, its runtimes behind one Engine interface, and training."""
