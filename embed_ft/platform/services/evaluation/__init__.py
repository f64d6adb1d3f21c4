"""BEIR retrieval evaluation: BEIR files (``beir``), embedders (``embedders``), the embedding cache (``cache``),
retrieval and metrics (``retrieval``, ``metrics``), request checks (``validation``), and the Evaluator's job
service (``service``) and documents (``resources``).

The names below are the package's public surface (the benchmark and the tests use them).
"""

from embed_ft.formats.beir import document_text

from .beir import BeirDataset, load_beir_dataset, load_beir_folder, parse_beir, validate_files_url
from .cache import PROBE_TEXTS, EmbeddingCache
from .embedders import CallableEmbedder, Embedder, EndpointEmbedder
from .errors import DatasetNotFound, EmbeddingEndpointError, EvaluationCancelled, EvaluationError
from .metrics import compute_metrics, nemo_results, parse_metric, pytrec_measures
from .retrieval import TaskEvaluation, evaluate_retrieval, exact_search

__all__ = [
    "PROBE_TEXTS",
    "BeirDataset",
    "CallableEmbedder",
    "DatasetNotFound",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingEndpointError",
    "EndpointEmbedder",
    "EvaluationCancelled",
    "EvaluationError",
    "TaskEvaluation",
    "compute_metrics",
    "document_text",
    "evaluate_retrieval",
    "exact_search",
    "load_beir_dataset",
    "load_beir_folder",
    "nemo_results",
    "parse_beir",
    "parse_metric",
    "pytrec_measures",
    "validate_files_url",
]
