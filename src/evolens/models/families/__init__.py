"""One module per model family, each declaring ``ADAPTER: ModelAdapter``."""
