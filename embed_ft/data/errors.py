"""The data layer's one error type."""


class SourceError(ValueError):
    """A source that cannot be loaded or yields no usable triplets; the message names source, file, column, counts."""
