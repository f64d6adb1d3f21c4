"""The NeMo Microservices v1 wire contract (25.x): typed request and response models, written once for this API
generation (the v2 generation's are in ``embed_ft.nemo.v2.contract``)."""
