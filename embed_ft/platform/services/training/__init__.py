"""Customization (fine-tuning) jobs: the server-side service, the spawned worker, and the data they read."""
