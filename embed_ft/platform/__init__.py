"""Embedded NeMo-compatible local platform: the NeMo v1 wire contract, doing the real work on this machine."""
