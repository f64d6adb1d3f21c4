"""Pure-Python data layer: SPECTER-like triplets (`specter`) and BEIR datasets (`beir`). No Dagster, no HTTP."""

from .beir import BeirData, beir_train_triplets, is_beir_folder, load_beir, testing_split_to_beir
from .specter import (
    DROP_REASONS,
    SPLITS,
    CleanResult,
    LoadedSource,
    SourceError,
    SplitOptions,
    TripletSummary,
    build_triplet_splits,
    clean_triplets,
    load_specter_source,
    split_triplets,
    write_nemo_jsonl,
)

__all__ = [
    "DROP_REASONS",
    "SPLITS",
    "BeirData",
    "CleanResult",
    "LoadedSource",
    "SourceError",
    "SplitOptions",
    "TripletSummary",
    "beir_train_triplets",
    "build_triplet_splits",
    "clean_triplets",
    "is_beir_folder",
    "load_beir",
    "load_specter_source",
    "split_triplets",
    "testing_split_to_beir",
    "write_nemo_jsonl",
]
