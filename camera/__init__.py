"""Cameras, the photoelectric gate, the six-view station and the synthetic glass renderer."""
