"""Tiny but real inputs for end-to-end lineage tests: SPECTER-layout triplets and a BEIR set on disk."""

from __future__ import annotations

import json
import random
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
