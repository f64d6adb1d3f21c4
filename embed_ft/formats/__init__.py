"""The file formats the product reads and writes, one definition each (stdlib, numpy and pyarrow only).

`files` (atomic writes), `nemo_jsonl` (the NeMo triplet JSONL rows), `beir` (BEIR folders and document text).
Used by the data layer and the local platform alike; nothing here imports Dagster, FastAPI or HTTP clients.
"""
