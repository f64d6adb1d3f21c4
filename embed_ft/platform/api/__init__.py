"""The HTTP layer: one module per NeMo service, each exposing ``router``; ``deps`` and ``errors`` are shared."""
