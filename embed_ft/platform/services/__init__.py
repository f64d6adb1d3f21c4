"""The platform's domain services: no FastAPI, no HTTP; they raise the domain errors of ``errors``."""
