"""Pure-Python data layer: SPECTER-like triplets and BEIR datasets. No Dagster, no HTTP.

`specter` (load a source, snapshot it, build the splits), `cleaning`, `splitting`, `nemo_jsonl_writer`,
`split_checks`, `beir` (BEIR sets for training and the held-out evaluation); errors are `errors.SourceError`.
"""
