"""Camera drivers, one module per `driver:` key of config.yaml (synthetic, batch, pylon, genicam)."""
