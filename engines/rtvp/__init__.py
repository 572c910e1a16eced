"""RTVP (Refined Text-Visual Prompt) detector: one module per paper component."""
