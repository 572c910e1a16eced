"""RTVP (Refined Text-Visual Prompt) detector: one module per paper component."""

from engines.rtvp.model import RTVP, DeployedRTVP, RTVPConfig, build_model

__all__ = ["RTVP", "DeployedRTVP", "RTVPConfig", "build_model"]
