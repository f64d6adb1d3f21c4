"""Thin clients of the NeMo Platform v2 wire contract (NVIDIA NeMo Platform 26.x / `nemo-helix`), no Dagster.

The contract is ``contract.py`` (typed requests and responses) and docs/NEMO_CONTRACT.md ("v2"); the HTTP layer,
errors, polling and status vocabulary are the v1 clients' own (``embed_ft.nemo.http``, ``errors``, ``status``).
"""
