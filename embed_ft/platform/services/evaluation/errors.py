"""Errors of an evaluation and the callback types of a running one."""

from __future__ import annotations

from typing import Callable

from ..jobs import JobCancelled


class EvaluationError(Exception):
    """A problem the user can fix (dataset, endpoint, config); the message is shown as the job's detail."""


class DatasetNotFound(EvaluationError):
    """The BEIR dataset or one of its files is missing."""


class EmbeddingEndpointError(EvaluationError):
    """The embeddings endpoint failed or answered something unusable."""


class EvaluationCancelled(JobCancelled):
    """Raised between batches when the caller asked to stop."""


ProgressFn = Callable[[float, str], None]
StopFn = Callable[[], bool]
