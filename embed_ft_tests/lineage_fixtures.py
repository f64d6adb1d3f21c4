"""Tiny but real inputs for end-to-end lineage tests: SPECTER-layout triplets and a BEIR set on disk; and what one
experiment's lineage on them must give on either NeMo API generation (the report's checks, the metadata keys)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

TOPICS = {
    "protein folding": [
        "amino acid chains",
        "tertiary structure prediction",
        "chaperone proteins",
        "molecular dynamics of folding",
    ],
    "graph neural networks": [
        "message passing layers",
        "node classification",
        "graph convolution",
        "link prediction on graphs",
    ],
    "climate modelling": [
        "ocean circulation",
        "carbon cycle feedback",
        "regional downscaling",
        "aerosol radiative forcing",
    ],
    "quantum computing": [
        "qubit error correction",
        "superconducting circuits",
        "variational quantum eigensolver",
        "entanglement distillation",
    ],
    "speech recognition": [
        "acoustic models",
        "connectionist temporal classification",
        "end-to-end transducers",
        "noisy speech enhancement",
    ],
    "cancer immunotherapy": ["checkpoint inhibitors", "CAR T cells", "tumour microenvironment", "neoantigen vaccines"],
    "reinforcement learning": [
        "policy gradients",
        "temporal difference learning",
        "exploration bonuses",
        "offline reinforcement learning",
    ],
    "materials science": [
        "perovskite solar cells",
        "grain boundary diffusion",
        "high entropy alloys",
        "thin film deposition",
    ],
}


def write_specter_jsonl(path: Path, queries_per_topic: int = 6, seed: int = 0) -> Path:
    """SPECTER layout rows {"set": [query title, cited title, unrelated title]} with distinct queries."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    rows = []
    for topic in topics:
        for i in range(queries_per_topic):
            sub = TOPICS[topic][i % len(TOPICS[topic])]
            query = f"A study of {sub} in {topic} (part {i})"
            positive = f"Advances in {topic}: {sub} revisited {i}"
            other = rng.choice([t for t in topics if t != topic])
            negative = f"Advances in {other}: {rng.choice(TOPICS[other])} {i}"
            rows.append({"set": [query, positive, negative]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_beir_set(root: Path, name: str = "tinybeir") -> Path:
    """A BEIR-layout dataset: one document per (topic, subtopic), one query per topic."""
    folder = root / name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = [], [], []
    for t_index, (topic, subs) in enumerate(TOPICS.items()):
        for s_index, sub in enumerate(subs):
            doc_id = f"d{t_index}-{s_index}"
            corpus.append(
                {"_id": doc_id, "title": f"{sub.capitalize()}", "text": f"This paper is about {sub} in {topic}."}
            )
        queries.append({"_id": f"q{t_index}", "text": f"What is known about {subs[0]} for {topic}?"})
        qrels.append((f"q{t_index}", f"d{t_index}-0", 1))
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    )
    return folder


def tiny_lineage_run_config(source: str, beir_task: str, max_steps: int = 3) -> dict:
    """The spec changes of a whole lineage on tiny data: few rows, ``max_steps`` training steps, fast polling.

    They apply to the smoke preset (`materialize_experiment`); the experiment is the run's partition key."""
    return {
        "data.source": source,
        "split.sample_size": 40,
        "split.test_size": 8,
        "split.validation_size": 0.15,
        "split.seed": 7,
        "training.max_steps": max_steps,
        "training.batch_size": 8,
        "training.learning_rate": 5e-5,
        "remote.poll_interval_s": 0.5,
        "evaluation.tasks": [beir_task],
    }


def materialize_experiment(
    instance, resources: dict, changes: dict, experiment: str, selection=None, preset: str | None = "smoke", **kwargs
):
    """Register ``experiment`` and materialize the lineage (or ``selection``) for it, checks included: the run's
    first step stores the spec (``preset`` + ``changes``; no preset: the stored spec + ``changes``)."""
    from dagster import materialize

    from embed_ft.definitions import defs, lineage_assets
    from embed_ft.defs.experiments import prepare_experiment_run

    run_config = prepare_experiment_run(instance, experiment, preset, changes)
    if selection is not None and "experiment_spec" not in [str(s) for s in selection]:
        selection = ["experiment_spec", *selection]
    return materialize(
        [*lineage_assets, *(defs.asset_checks or [])],
        resources=resources,
        run_config=run_config,
        instance=instance,
        partition_key=experiment,
        selection=selection,
        **kwargs,
    )


def store_spec(instance, experiment: str, changes: dict, preset: str | None = "tutorial", raise_on_error: bool = True):
    """Store ``experiment``'s spec (``preset`` + ``changes``, on the local profile) as a run of `experiment_spec`
    alone, the way the Launchpad does; the result of that run."""
    from dagster import materialize

    from embed_ft.defs.experiment_spec import experiment_spec
    from embed_ft.defs.experiments import prepare_experiment_run
    from embed_ft.resources import CustomizerResource

    run_config = prepare_experiment_run(instance, experiment, preset, changes)
    return materialize(
        [experiment_spec],
        resources={"customizer": CustomizerResource()},
        run_config=run_config,
        instance=instance,
        partition_key=experiment,
        raise_on_error=raise_on_error,
    )


def materialize_with_spec(
    assets: list,
    instance,
    changes: dict,
    data_root=None,
    experiment: str = "data-test",
    preset: str | None = "tutorial",
    **kwargs,
):
    """Store ``experiment``'s spec, then materialize ``assets`` (unpartitioned) with it (run tag
    ``embed_ft/experiment``), with EMBED_FT_DATA_ROOT at ``data_root`` when given."""
    import os

    from dagster import materialize

    from embed_ft.defs.experiment_spec import EXPERIMENT_TAG

    store_spec(instance, experiment, changes, preset=preset)
    saved = os.environ.get("EMBED_FT_DATA_ROOT")
    if data_root is not None:
        os.environ["EMBED_FT_DATA_ROOT"] = str(data_root)
    try:
        return materialize(assets, instance=instance, tags={EXPERIMENT_TAG: experiment}, **kwargs)
    finally:
        if saved is None:
            os.environ.pop("EMBED_FT_DATA_ROOT", None)
        else:
            os.environ["EMBED_FT_DATA_ROOT"] = saved


# --- One experiment's whole lineage on tiny data, shared by the v1 (test_lineage_e2e) and v2 (test_lineage_v2_helix)
# lineage tests: the inputs, the report's checks, and what both generations must materialize with which keys.
TINY_TASK = "file://tinybeir/"
TINY_TASKS = {"tinybeir", "heldout"}
TINY_QUERIES = 8  # per task: the held-out split's test_size, and the tiny BEIR set's queries


@dataclass(frozen=True)
class TinyInputs:
    source: Path  # SPECTER-layout triplets
    beir_root: Path  # holds the BEIR set of TINY_TASK


def tiny_inputs(tmp_path: Path) -> TinyInputs:
    source = write_specter_jsonl(Path(tmp_path) / "source" / "triplets.jsonl")
    beir_root = Path(tmp_path) / "beir"
    write_beir_set(beir_root)
    return TinyInputs(source=source, beir_root=beir_root)


def assert_tiny_report(report) -> None:
    """What a report of the tiny lineage must say on any backend: both tasks, scores in [0, 1], deltas that are
    the differences, and per-query paired tests that honestly call 8 queries too few."""
    from embed_ft.defs.significance import TOO_FEW

    assert {row.task for row in report.rows} == TINY_TASKS
    for row in report.rows:
        assert 0.0 <= row.baseline <= 1.0
        assert 0.0 <= row.fine_tuned <= 1.0
        assert math.isclose(row.delta, row.fine_tuned - row.baseline)
    assert {t.verdict for t in report.tests} == {TOO_FEW}
    assert {t.queries for t in report.tests} == {TINY_QUERIES}


def materialized_metadata_keys(result) -> dict[str, list[str]]:
    """``{asset: sorted metadata keys}`` of every materialization of a run (``materialize``'s result)."""
    keys: dict[str, list[str]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        keys[materialization.asset_key.to_user_string()] = sorted(materialization.metadata)
    return keys


METADATA_KEYS_FILE = Path(__file__).with_name("lineage_metadata_keys.json")


def lineage_metadata_keys() -> dict[str, list[str]]:
    """The assets a tiny lineage run materializes and each one's metadata keys (recorded from a v1 run on the
    embedded platform; `materialized_metadata_keys`): the graph and keys both API generations must give."""
    return json.loads(METADATA_KEYS_FILE.read_text())
