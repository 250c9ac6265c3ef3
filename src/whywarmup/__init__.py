"""whywarmup: reproduce and extend "Why Warmup the Learning Rate?" (Kalra & Barkeshli, NeurIPS 2024)."""

__version__ = "0.1.0"
