"""Arrow helpers for large_string columns, shared by cleaning and the NeMo JSONL writer (zero-copy views)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def large_string_scalar(text: str) -> pa.Scalar:
    # Arrow's join kernels want literals of the arrays' type (large_string throughout the data layer).
    return pa.scalar(text, pa.large_string())


def column(table: pa.Table, name: str) -> pa.Array:
    """One column as a single array."""
    values = table.column(name)
    if isinstance(values, pa.ChunkedArray):
        # One chunk (the usual case, also for slices) is used as is: combine_chunks would copy it.
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def offsets_and_bytes(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A large_string array's offsets (len + 1) and its whole UTF-8 data buffer, as numpy views (no copy)."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64, count=n + 1, offset=values.offset * 8)
    data_buffer = values.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def rebuild_lists(lengths: np.ndarray, flat: pa.Array) -> pa.Array:
    """A large_list array of ``flat`` cut into consecutive lists of the given lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), flat)
