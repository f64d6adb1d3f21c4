"""The experiment spec: one typed document of every setting of an experiment (`experiment.py`), its changes and
versions (`changes.py`) and the named presets (`presets.py`); the defaults come from `embed_ft/profiles.py`."""
