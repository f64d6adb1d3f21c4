"""Benchmark: a customization job on the local platform vs a plain SentenceTransformerTrainer script.

    python bench/bench_training.py [--rows 0] [--max-steps N] [--batch-size 32] [--learning-rate 2e-5]
                                   [--max-seq-length 128] [--seed 42] [--threads N] [--platform-first]

Both sides train all-MiniLM-L6-v2 (the packaged weights) on the same triplets with the same hyperparameters
(MultipleNegativesRankingLoss, batch 32, lr 2e-5, one epoch on CUDA / 4 steps on a CPU / --max-steps,
max_seq_length 128, seed, AdamW with a linear schedule and no warm-up, the no-duplicates batch sampler, loss logged
every max(1, steps // 20) steps, no validation) and the same torch thread count, on CUDA when present (bf16 mixed
precision where the hardware computes bf16 natively, a GPU or an AVX512-BF16/AMX CPU, on both sides).

Triplets: one per judged (query, document) pair of ../shared/data/beir/scifact/qrels/train.tsv (919 pairs):
query, positive = the judged document's title + text, negative = a seeded random corpus document not judged for the
query. ``--rows`` above 919 cycles through the pairs again with fresh random negatives. Written to a temp folder.

- plain: a fresh ``python bench/bench_training.py --plain-worker SPEC`` subprocess (import, load, train, save);
- platform: ``python -m embed_ft.platform serve`` on a temp home; upload with the Data Store client, register the
  dataset, create config + job over HTTP, poll ``/status`` every second until completion.

Figures: triplets/s of the training compute alone (transformers' ``train_runtime`` of each ``train()``: read from the
plain worker and from the job's container log) and their ratio platform/plain (goal >= 0.95); the end-to-end
ratio (the job's ``elapsed_time`` from the status endpoint, worker start to saved model, vs the plain subprocess's
whole wall time including interpreter start, imports, model load and save); the job's elapsed time vs the plain
``train()`` wall (the issue's literal comparison, which charges the platform for load/save); final losses of both
(the last logged loss point and the mean training loss). Prints a table, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/common.py, next to this script)

NAMESPACE = "bench-training"
DATASET = "scifact-train-triplets"
TARGET = "sentence-transformers/all-minilm-l6-v2@v1"
JOB_TIMEOUT_S = 1800.0
POLL_INTERVAL_S = 1.0
# A CPU run of the whole epoch (29 steps) takes a quarter of an hour on 2 cores: keep the bench near 5 minutes.
CPU_DEFAULT_MAX_STEPS = 4


# ------------------------------------------------------------------------------------------------ data


def scifact_triplets(rows: int, seed: int) -> list[dict[str, Any]]:
    """NeMo training rows ``{"query", "pos_doc", "neg_doc": [one random non-relevant doc]}`` from SciFact train."""
    from embed_ft.data.beir import read_qrels

    folder = common.SCIFACT_DIR
    queries = {q["_id"]: q["text"] for q in common.read_jsonl(folder / "queries.jsonl")}
    corpus = {d["_id"]: common.scifact_doc_text(d) for d in common.read_jsonl(folder / "corpus.jsonl")}
    qrels = read_qrels(folder / "qrels" / "train.tsv")
    pairs = [(qid, doc_id) for qid, docs in qrels.items() for doc_id, score in docs.items() if score > 0]
    if not pairs:
        raise ValueError(f"{folder}/qrels/train.tsv has no positive judgement")
    doc_ids = sorted(corpus)
    rng = random.Random(seed)
    wanted = rows or len(pairs)
    out = []
    for i in range(wanted):
        qid, doc_id = pairs[i % len(pairs)]
        negative = rng.choice(doc_ids)
        while negative in qrels[qid]:
            negative = rng.choice(doc_ids)
        out.append({"query": queries[qid], "pos_doc": corpus[doc_id], "neg_doc": [corpus[negative]]})
    return out


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def planned_steps(rows: int, batch_size: int, max_steps: int) -> int:
    return max_steps if max_steps > 0 else max(1, math.ceil(rows / batch_size))


def triplets_trained(rows: int, batch_size: int, steps: int) -> int:
    """Rows one epoch (or ``steps`` steps) actually feeds: the last batch of an epoch may be short."""
    return min(rows, steps * batch_size)


# ------------------------------------------------------------------------------------ the plain script


def plain_worker(spec_path: Path) -> None:
    """The plain SentenceTransformerTrainer script, run in its own fresh process; writes its figures as JSON."""
    started = time.perf_counter()
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.training_args import BatchSamplers

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    imported = time.perf_counter()

    rows = common.read_jsonl(Path(spec["train_file"]))
    dataset = Dataset.from_dict(
        {
            "anchor": [r["query"] for r in rows],
            "positive": [r["pos_doc"] for r in rows],
            "negative_1": [r["neg_doc"][0] for r in rows],
        }
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(spec["model_path"], device=device, local_files_only=True)
    model.max_seq_length = spec["max_seq_length"]
    # bf16 mixed precision where the platform's worker uses it too (CUDA, or a CPU with AVX512-BF16/AMX)
    from embed_ft.platform.services.training.worker import bf16_supported

    use_bf16 = bf16_supported(device)
    loaded = time.perf_counter()
    args = SentenceTransformerTrainingArguments(
        output_dir=spec["output_dir"],
        num_train_epochs=1,
        max_steps=spec["max_steps"] or -1,
        per_device_train_batch_size=spec["batch_size"],
        learning_rate=spec["learning_rate"],
        seed=spec["seed"],
        data_seed=spec["seed"],
        logging_steps=spec["logging_steps"],
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=use_bf16,
        dataloader_num_workers=0,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
    )
    train_started = time.perf_counter()
    output = trainer.train()
    train_wall = time.perf_counter() - train_started
    model.save(str(Path(spec["output_dir"]) / "final"))
    finished = time.perf_counter()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    Path(spec["result_file"]).write_text(
        json.dumps(
            {
                "device": device,
                "threads": torch.get_num_threads(),
                "import_s": imported - started,
                "load_s": loaded - imported,
                "train_wall_s": train_wall,
                "train_runtime_s": float(output.metrics["train_runtime"]),
                "save_s": finished - started - (train_started - started) - train_wall,
                "in_process_s": finished - started,
                "global_step": int(trainer.state.global_step),
                "mean_train_loss": float(output.training_loss),
                "last_logged_loss": float(logged[-1]) if logged else None,
                "peak_rss_mib": common.peak_rss_mib(),
            }
        ),
        encoding="utf-8",
    )


def run_plain(train_file: Path, work: Path, hp: dict[str, Any], threads: int) -> dict[str, Any]:
    from embed_ft.platform.services.model_weights import bundled_minilm_path

    spec = {
        **hp,
        "train_file": str(train_file),
        "model_path": str(bundled_minilm_path()),
        "output_dir": str(work / "plain-out"),
        "result_file": str(work / "plain-result.json"),
        "threads": threads,
    }
    spec_path = work / "plain-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ)
    # The same thread settings the platform's training worker gives itself.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--plain-worker", str(spec_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(
            f"the plain training script failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    result = json.loads(Path(spec["result_file"]).read_text(encoding="utf-8"))
    result["end_to_end_s"] = wall
    return result


# ------------------------------------------------------------------------------------------ the platform


FINAL_LOSS = re.compile(r"final train loss ([0-9.eE+-]+)")
TRAIN_RUNTIME = re.compile(r"'train_runtime':\s*'?([0-9.eE+-]+)")


def run_platform(train_file: Path, work: Path, hp: dict[str, Any], threads: int) -> dict[str, Any]:
    import requests

    from embed_ft.nemo.customizer import sft_config_body, sft_job_body
    from embed_ft.nemo.datastore import files_url

    os.environ["EMBED_FT_TRAIN_THREADS"] = str(threads)  # inherited by the platform and its worker
    with common.platform_subprocess(work / "platform-home") as base_url:
        clients = common.nemo_clients(base_url)
        started = time.perf_counter()
        repo_id = f"{NAMESPACE}/{DATASET}"
        clients["datastore"].ensure_namespace(NAMESPACE)
        clients["datastore"].create_repo(repo_id)
        clients["datastore"].upload_files(repo_id, {"training/training.jsonl": train_file}, "bench triplets")
        clients["entities"].ensure_namespace(NAMESPACE)
        clients["entities"].create_dataset(DATASET, NAMESPACE, files_url(repo_id), description="bench triplets")
        clients["customizer"].create_config(
            sft_config_body(
                "minilm-bench@v1",
                NAMESPACE,
                TARGET,
                micro_batch_size=hp["batch_size"],
                training_precision="bf16",
                max_seq_length=hp["max_seq_length"],
            )
        )
        extra = {"max_seq_length": hp["max_seq_length"], "seed": hp["seed"], "log_every_n_steps": hp["logging_steps"]}
        if hp["max_steps"]:
            extra["max_steps"] = hp["max_steps"]
        body = sft_job_body(
            "bench-sft",
            f"{NAMESPACE}/minilm-bench@v1",
            NAMESPACE,
            DATASET,
            f"{NAMESPACE}/minilm-bench-out",
            epochs=1,
            batch_size=hp["batch_size"],
            learning_rate=hp["learning_rate"],
            extra_hyperparameters=extra,
            dataset_parameters={"num_hard_negatives": 1},
        )
        uploaded = time.perf_counter()
        # CPU the platform's own process (API server, job monitor; not the training worker) spends during the job.
        server_pid = common.platform_pid(work / "platform-home")
        server_cpu_before = common.process_cpu_seconds(server_pid) if server_pid else None
        job_id = clients["customizer"].create_job(body)["id"]
        submitted = time.perf_counter()
        status = poll_job(clients["customizer"], job_id)
        completed = time.perf_counter()
        server_cpu_after = common.process_cpu_seconds(server_pid) if server_pid else None
        if status["status"] != "completed":
            raise RuntimeError(
                f"customization job {job_id} ended {status['status']}: {(status.get('status_logs') or [{}])[-1]}"
            )
        # Plain text: read with requests (the NeMo client parses JSON).
        logs = requests.get(f"{base_url}/v1/customization/jobs/{job_id}/container-logs", timeout=(5, 60)).text
    runtime = TRAIN_RUNTIME.search(logs)
    final = next(
        (
            FINAL_LOSS.search(e.get("detail") or "")
            for e in reversed(status.get("status_logs") or [])
            if FINAL_LOSS.search(e.get("detail") or "")
        ),
        None,
    )
    device = re.search(r"device: (\w+), torch threads: (\d+)", logs)
    return {
        "job_id": job_id,
        "device": device.group(1) if device else None,
        "threads": int(device.group(2)) if device else None,
        "upload_and_register_s": uploaded - started,
        "job_elapsed_s": float(status["elapsed_time"]),
        "client_submit_to_completed_s": completed - submitted,
        "server_cpu_s_during_job": (
            round(server_cpu_after - server_cpu_before, 3)
            if None not in (server_cpu_before, server_cpu_after)
            else None
        ),
        "train_runtime_s": float(runtime.group(1)) if runtime else None,
        "global_step": int(status["steps_completed"]),
        "mean_train_loss": float(final.group(1)) if final else None,
        "last_logged_loss": status.get("train_loss"),
    }


def poll_job(customizer: Any, job_id: str) -> dict[str, Any]:
    """``/status`` every second until the job ends (bounded by JOB_TIMEOUT_S)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status = customizer.get_status(job_id)
        if status["status"] in ("completed", "failed", "cancelled"):
            return status
        if time.monotonic() > deadline:
            customizer.cancel_job(job_id)
            raise TimeoutError(
                f"customization job {job_id} did not finish within {JOB_TIMEOUT_S:.0f} s "
                f"(last status {status['status']}, {status.get('percentage_done')}% done)"
            )
        time.sleep(POLL_INTERVAL_S)


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="triplets (0 = one per SciFact train pair, 919)")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after N steps (0 = one epoch; default: one epoch on CUDA, "
        f"{CPU_DEFAULT_MAX_STEPS} steps on a CPU, where one step of 96 texts x 128 tokens "
        "takes seconds)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads on both sides (0 = what the platform's worker picks: every usable core)",
    )
    parser.add_argument("--platform-first", action="store_true", help="run the platform job before the plain script")
    parser.add_argument("--plain-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.offline_hub()
    if args.plain_worker:
        plain_worker(args.plain_worker)
        return 0

    from embed_ft.platform.services.training.worker import worker_threads

    threads = args.threads or worker_threads()
    if args.max_steps is None:
        args.max_steps = 0 if common.torch_device() == "cuda" else CPU_DEFAULT_MAX_STEPS
    rows = scifact_triplets(args.rows, args.seed)
    steps = planned_steps(len(rows), args.batch_size, args.max_steps)
    hp = {
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "max_seq_length": args.max_seq_length,
        "seed": args.seed,
        "max_steps": args.max_steps,
        "logging_steps": max(1, steps // 20),
    }
    with tempfile.TemporaryDirectory(prefix="bench-training-") as folder:
        work = Path(folder)
        train_file = work / "data" / "training" / "training.jsonl"
        write_jsonl(rows, train_file)
        print(f"{len(rows)} triplets, {steps} steps of {args.batch_size}, {threads} torch threads", file=sys.stderr)
        # One after the other (never side by side: they would share the cores); --platform-first swaps the order.
        sides = [("plain", run_plain), ("platform", run_platform)]
        results = {}
        for name, run in reversed(sides) if args.platform_first else sides:
            results[name] = run(train_file, work, hp, threads)
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
        plain, platform = results["plain"], results["platform"]

    n_plain = triplets_trained(len(rows), args.batch_size, plain["global_step"])
    n_platform = triplets_trained(len(rows), args.batch_size, platform["global_step"])
    plain_tps = n_plain / plain["train_runtime_s"]
    platform_tps = n_platform / platform["train_runtime_s"] if platform["train_runtime_s"] else None
    figures = {
        "bench": "training",
        "machine": common.machine_info(),
        "device": platform["device"] or plain["device"],
        "triplets": len(rows),
        "hyperparameters": {**hp, "epochs": 1, "threads": threads},
        "order": "platform, plain" if args.platform_first else "plain, platform",
        "steps": {"plain": plain["global_step"], "platform": platform["global_step"]},
        "train_compute": {  # transformers' train_runtime of each train() call
            "plain_s": round(plain["train_runtime_s"], 3),
            "platform_s": platform["train_runtime_s"],
            "plain_triplets_per_s": round(plain_tps, 3),
            "platform_triplets_per_s": round(platform_tps, 3) if platform_tps else None,
            "ratio_platform_over_plain": common.ratio(platform_tps, plain_tps),
        },
        "end_to_end": {  # worker start .. model saved (platform) vs interpreter start .. model saved (plain)
            "plain_subprocess_s": round(plain["end_to_end_s"], 3),
            "platform_job_elapsed_s": platform["job_elapsed_s"],
            "ratio_platform_over_plain_throughput": common.ratio(plain["end_to_end_s"], platform["job_elapsed_s"]),
            "platform_client_submit_to_completed_s": round(platform["client_submit_to_completed_s"], 3),
            "platform_upload_and_register_s": round(platform["upload_and_register_s"], 3),
            "platform_server_cpu_s_during_job": platform["server_cpu_s_during_job"],
            "plain_phases_s": {k: round(plain[k], 3) for k in ("import_s", "load_s", "train_wall_s", "save_s")},
        },
        "job_elapsed_vs_plain_train_wall": {  # the literal comparison: charges the job for load and save
            "plain_train_wall_s": round(plain["train_wall_s"], 3),
            "platform_job_elapsed_s": platform["job_elapsed_s"],
            "ratio_platform_over_plain_throughput": common.ratio(plain["train_wall_s"], platform["job_elapsed_s"]),
        },
        "loss": {
            "plain_mean": round(plain["mean_train_loss"], 6),
            "platform_mean": platform["mean_train_loss"],
            "plain_last_logged": plain["last_logged_loss"],
            "platform_last_logged": platform["last_logged_loss"],
            "abs_diff_mean": (
                round(abs(plain["mean_train_loss"] - platform["mean_train_loss"]), 6)
                if platform["mean_train_loss"] is not None
                else None
            ),
            "abs_diff_last_logged": (
                round(abs(plain["last_logged_loss"] - platform["last_logged_loss"]), 6)
                if None not in (plain["last_logged_loss"], platform["last_logged_loss"])
                else None
            ),
        },
        "plain_peak_rss_mib": round(plain["peak_rss_mib"], 1),
    }
    tc = figures["train_compute"]
    print(f"{'':28}{'plain':>12}{'platform':>12}")
    print(f"{'train() runtime, s':28}{tc['plain_s']:>12}{tc['platform_s']:>12}")
    print(f"{'triplets/s (train compute)':28}{tc['plain_triplets_per_s']:>12}{tc['platform_triplets_per_s']:>12}")
    print(
        f"{'end to end, s':28}{figures['end_to_end']['plain_subprocess_s']:>12}"
        f"{figures['end_to_end']['platform_job_elapsed_s']:>12}"
    )
    print(f"{'mean train loss':28}{figures['loss']['plain_mean']:>12}{figures['loss']['platform_mean']:>12}")
    print(f"ratio platform/plain triplets/s: {tc['ratio_platform_over_plain']} (goal >= 0.95)")
    common.print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
