"""One FastAPI router per NeMo service."""
