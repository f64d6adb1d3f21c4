"""embed-ft: fine-tune embedding models with NeMo Microservices (or the embedded local platform) and prove the gain."""

__version__ = "0.1.0"
