"""Customization jobs: sentence-transformers fine-tuning in a spawned worker process.

The platform process owns the job documents; the worker owns torch. They talk through three files under
``<home>/jobs/<job id>/``: ``progress.json`` (rewritten atomically by the worker at every step/log/eval and
folded into the job document by the parent's monitor thread), ``result.json`` (written once at the end) and
``container.log`` (the worker's stdout/stderr, served by ``GET .../container-logs``). A separate process (not a
thread) keeps the API responsive, lets cancel kill training within seconds, and turns a crash of torch into a
``failed`` job instead of a dead platform.

Loss: MultipleNegativesRankingLoss over (anchor, positive, negative_1..n), so every other positive and negative
in the batch counts as a negative as well as the row's own hard negatives.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import queue
import random
import shutil
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .store import EntityStore, atomic_write_text, utc_now

log = logging.getLogger("embed_ft.platform.training")

JOB_KIND = "customization_job"
TERMINAL_STATUSES = ("completed", "failed", "cancelled")
TRAINING_SPLIT = "training"
VALIDATION_SPLIT = "validation"
# Validation loss is computed on at most this many rows, so that evaluating it stays cheap on a CPU.
MAX_VALIDATION_ROWS = 512
# Reported problems per file before "... and N more".
MAX_REPORTED_ROW_ERRORS = 5
PROGRESS_POLL_S = 0.25
TERMINATE_GRACE_S = 5.0
ELAPSED_UPDATE_S = 2.0
# The worker rewrites progress.json at most this often between log/eval/epoch events.
PROGRESS_MIN_INTERVAL_S = 1.0
# Validation passes of a job without val_check_interval (the last step always adds one).
VALIDATIONS_PER_JOB = 3


class TrainingDataError(ValueError):
    """A training/validation file that cannot be trained on; the message names the file, line and problem."""


# ------------------------------------------------------------------------------------------ data files


def split_files(repo_dir: Path, split: str) -> list[Path]:
    """The JSONL files of one split: every ``*.jsonl`` under the folder named after it (tutorial layout)."""
    folder = repo_dir / split
    return sorted(p for p in folder.rglob("*.jsonl") if p.is_file()) if folder.is_dir() else []


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for key in ("query", "pos_doc"):
        if key not in row:
            return f"'{key}' is missing"
        if not isinstance(row[key], str) or not row[key].strip():
            return f"'{key}' must be a non-empty string"
    negatives = row.get("neg_doc", [])
    if isinstance(negatives, str):
        return "'neg_doc' must be an array of strings, got a string"
    if not isinstance(negatives, list):
        return f"'neg_doc' must be an array of strings, got {type(negatives).__name__}"
    for i, neg in enumerate(negatives):
        if not isinstance(neg, str) or not neg.strip():
            return f"'neg_doc[{i}]' must be a non-empty string"
    return None


def read_triplets(path: Path, label: str) -> list[dict[str, Any]]:
    """Read and check a ``{"query", "pos_doc", "neg_doc": [...]}`` JSONL file; ``label`` names it in errors."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise TrainingDataError(f"{label}: cannot be read ({exc.strerror})") from exc
    with handle:
        try:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(f"line {line_no}: not valid JSON ({exc.msg} at column {exc.colno})")
                    continue
                problem = _row_problem(row)
                if problem:
                    problems.append(f"line {line_no}: {problem}")
                else:
                    rows.append({"query": row["query"], "pos_doc": row["pos_doc"], "neg_doc": list(row.get("neg_doc", []))})
        except UnicodeDecodeError as exc:
            raise TrainingDataError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if problems:
        shown = "; ".join(problems[:MAX_REPORTED_ROW_ERRORS])
        more = f"; and {len(problems) - MAX_REPORTED_ROW_ERRORS} more" if len(problems) > MAX_REPORTED_ROW_ERRORS else ""
        raise TrainingDataError(f"{label}: {len(problems)} broken row(s): {shown}{more}")
    if not rows:
        raise TrainingDataError(f"{label}: has no rows")
    return rows


def read_split(repo_dir: Path, split: str, dataset_label: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in split_files(repo_dir, split):
        rows.extend(read_triplets(path, f"{dataset_label}/{path.relative_to(repo_dir).as_posix()}"))
    return rows


def choose_num_negatives(rows: list[dict[str, Any]], requested: int | None) -> int:
    """Hard negatives per row: the requested count, but never more than every row has."""
    available = min(len(r["neg_doc"]) for r in rows)
    return available if requested is None else min(requested, available)


def triplet_columns(
    rows: list[dict[str, Any]], num_negatives: int, strategy: str = "first", seed: int = 42
) -> dict[str, list[str]]:
    """Rows -> the (anchor, positive, negative_1..n) columns MultipleNegativesRankingLoss reads, in order."""
    rng = random.Random(seed)
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    for i in range(num_negatives):
        columns[f"negative_{i + 1}"] = []
    for row in rows:
        columns["anchor"].append(row["query"])
        columns["positive"].append(row["pos_doc"])
        negatives = row["neg_doc"]
        chosen = rng.sample(negatives, num_negatives) if strategy == "random" else negatives[:num_negatives]
        for i, neg in enumerate(chosen):
            columns[f"negative_{i + 1}"].append(neg)
    return columns


# ------------------------------------------------------------------------------------------ the worker


def worker_threads() -> int:
    """Torch threads for training: every core this process may use (the API server only answers status polls
    meanwhile), or ``EMBED_FT_TRAIN_THREADS``."""
    if os.environ.get("EMBED_FT_TRAIN_THREADS"):
        return max(1, int(os.environ["EMBED_FT_TRAIN_THREADS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _redirect_output(log_path: Path) -> None:
    """Send the worker's stdout/stderr (Python and C level) to its container log."""
    import sys

    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)


def _optimizer_arguments(hp: dict[str, Any]) -> dict[str, Any]:
    """NeMo optimizer names -> transformers TrainingArguments (optimizer and learning-rate schedule)."""
    name = hp.get("optimizer")
    if not name:
        return {}
    args: dict[str, Any] = {"optim": "adamw_torch"}
    if name.endswith("cosine_annealing"):
        if hp.get("min_learning_rate"):
            args["lr_scheduler_type"] = "cosine_with_min_lr"
            args["lr_scheduler_kwargs"] = {"min_lr": float(hp["min_learning_rate"])}
        else:
            args["lr_scheduler_type"] = "cosine"
    else:  # *_flat_lr
        args["lr_scheduler_type"] = "constant_with_warmup"
    if name.startswith("adam_"):
        # Plain Adam: L2 regularisation instead of decoupled weight decay is not offered by torch's AdamW;
        # with weight_decay 0 (the usual setting) both are the same optimizer.
        args["optim"] = "adamw_torch"
    return args


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the platform process dies, even by SIGKILL: an orphaned worker would
    keep training and writing a model nobody tracks. Elsewhere a watchdog thread notices the parent change."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0 and os.getppid() == parent:
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def run_training_worker(spec: dict[str, Any]) -> None:
    """Entry point of the spawned worker process. Never returns an exception: writes result.json instead."""
    _die_with_parent()
    _redirect_output(Path(spec["log_path"]))
    threads = int(spec.get("threads") or 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never reach for the Hub
    os.environ["WANDB_DISABLED"] = "true"
    result_path = Path(spec["result_path"])
    try:
        summary = _train(spec, threads)
        atomic_write_text(result_path, json.dumps({"status": "completed", **summary}))
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the job's error text
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        atomic_write_text(result_path, json.dumps({"status": "failed", "error": message}))
        raise SystemExit(1)


def _train(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    hp = spec["hyperparameters"]
    dataset_parameters = spec.get("dataset_parameters") or {}
    seed = int(hp.get("seed", 42))
    started = time.monotonic()
    progress_path = Path(spec["progress_path"])
    progress: dict[str, Any] = {
        "phase": "loading", "percentage_done": 0.0, "steps_completed": 0, "steps_per_epoch": None,
        "epochs_completed": 0, "train_loss": [], "val_loss": [], "max_steps": None,
    }

    last_write = [0.0]

    def write_progress(force: bool = True) -> None:
        # Per-step calls are throttled: on a GPU a step takes milliseconds, as long as the write and its fsync.
        now = time.monotonic()
        if not force and now - last_write[0] < PROGRESS_MIN_INTERVAL_S:
            return
        last_write[0] = now
        progress["elapsed_time"] = round(now - started, 3)
        atomic_write_text(progress_path, json.dumps(progress))

    write_progress()
    repo_dir = Path(spec["dataset_dir"])
    label = spec["dataset_label"]
    train_rows = read_split(repo_dir, TRAINING_SPLIT, label)
    val_rows = read_split(repo_dir, VALIDATION_SPLIT, label)[:MAX_VALIDATION_ROWS]
    num_negatives = choose_num_negatives(train_rows, dataset_parameters.get("num_hard_negatives"))
    strategy = dataset_parameters.get("negative_sample_strategy") or "first"
    train_dataset = Dataset.from_dict(triplet_columns(train_rows, num_negatives, strategy, seed))
    eval_dataset = None
    if val_rows:
        val_negatives = min(num_negatives, choose_num_negatives(val_rows, None))
        eval_dataset = Dataset.from_dict(triplet_columns(val_rows, val_negatives, strategy, seed))
    print(f"training rows: {len(train_rows)}, validation rows: {len(val_rows)}, hard negatives per row: {num_negatives}")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(spec["base_model_path"], device=device, local_files_only=True)
    requested_len = spec.get("max_seq_length")
    if requested_len:
        limit = getattr(getattr(model[0], "auto_model", None), "config", None)
        limit = getattr(limit, "max_position_embeddings", None) or requested_len
        if requested_len > limit:
            print(f"max_seq_length {requested_len} exceeds the model's {limit} positions; using {limit}")
        model.max_seq_length = min(int(requested_len), int(limit))
    print(f"device: {device}, torch threads: {threads}, max_seq_length: {model.max_seq_length}")

    batch_size = int(hp.get("batch_size", 32))
    epochs = int(hp.get("epochs", 1))
    max_steps = int(hp.get("max_steps") or -1)
    steps_per_epoch = max(1, math.ceil(len(train_dataset) / batch_size))
    total_steps = max_steps if max_steps > 0 else steps_per_epoch * epochs
    logging_steps = int(hp.get("log_every_n_steps") or max(1, total_steps // 20))
    interval = hp.get("val_check_interval")
    if interval is None:
        # At most VALIDATIONS_PER_JOB validation passes (each one encodes up to 3 x MAX_VALIDATION_ROWS texts).
        eval_steps = max(logging_steps, math.ceil(total_steps / VALIDATIONS_PER_JOB))
    elif float(interval) <= 1.0:
        eval_steps = max(1, round(steps_per_epoch * float(interval)))
    else:
        eval_steps = int(interval)
    precision = str(spec.get("precision") or "").lower()
    use_bf16 = device == "cuda" and "bf16" in precision and torch.cuda.is_bf16_supported()
    use_fp16 = device == "cuda" and not use_bf16 and precision in ("16", "fp16", "16-mixed")

    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(spec["job_dir"]) / "trainer"),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=float(hp.get("learning_rate", 2e-5)),
        warmup_steps=int(hp.get("warmup_steps") or 0),
        weight_decay=float(hp.get("weight_decay") or 0.0),
        adam_beta1=float(hp.get("adam_beta1", 0.9)),
        adam_beta2=float(hp.get("adam_beta2", 0.999)),
        seed=seed,
        data_seed=seed,
        logging_steps=logging_steps,
        eval_strategy="steps" if eval_dataset is not None else "no",
        eval_steps=eval_steps if eval_dataset is not None else None,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=use_bf16,
        fp16=use_fp16,
        dataloader_num_workers=0,
        # Duplicate texts in one batch would be false in-batch negatives for MNRL.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        **_optimizer_arguments(hp),
    )

    class ProgressCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            nonlocal steps_per_epoch
            if train_dataloader is not None:
                steps_per_epoch = max(1, len(train_dataloader))
            progress.update(phase="training", steps_per_epoch=steps_per_epoch, max_steps=state.max_steps)
            write_progress()

        def on_step_end(self, args, state, control, **kwargs):
            progress["steps_completed"] = state.global_step
            progress["percentage_done"] = round(100.0 * state.global_step / max(1, state.max_steps), 2)
            if state.global_step >= state.max_steps and eval_dataset is not None:
                control.should_evaluate = True  # always end with a validation loss
            write_progress(force=state.global_step >= state.max_steps)

        def on_epoch_end(self, args, state, control, **kwargs):
            progress["epochs_completed"] = int(round(state.epoch or 0))
            write_progress()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            point = {"step": state.global_step, "epoch": round(float(state.epoch or 0), 4)}
            if "loss" in logs:
                progress["train_loss"].append({**point, "value": float(logs["loss"])})
            if "eval_loss" in logs:
                series = progress["val_loss"]
                if not series or series[-1]["step"] != state.global_step:
                    series.append({**point, "value": float(logs["eval_loss"])})
            write_progress()

    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[ProgressCallback()],
    )
    output = trainer.train()

    # Save next to the final folder, then rename: a half-written model never appears under its real name.
    final_dir = Path(spec["output_dir"])
    staging_dir = final_dir.with_name(f".{final_dir.name}.partial")
    shutil.rmtree(staging_dir, ignore_errors=True)
    model.save(str(staging_dir))
    shutil.rmtree(final_dir, ignore_errors=True)
    os.replace(staging_dir, final_dir)
    progress.update(phase="saved", percentage_done=100.0)
    progress["epochs_completed"] = max(progress["epochs_completed"], int(math.floor(trainer.state.epoch or 0)))
    write_progress()
    return {
        "output_dir": str(final_dir),
        "train_loss": float(output.training_loss),
        "global_step": int(trainer.state.global_step),
        "num_hard_negatives": num_negatives,
        "train_rows": len(train_rows),
        "validation_rows": len(val_rows),
    }


# --------------------------------------------------------------------------------- the parent's service


def status_details_from_progress(progress: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """The worker's progress file -> the fields of ``GET .../jobs/{id}/status`` (NeMo shape)."""
    train = [{"step": p["step"], "value": p["value"]} for p in progress.get("train_loss", [])]
    val = [{"step": p["step"], "value": p["value"]} for p in progress.get("val_loss", [])]
    best_epoch = None
    if progress.get("val_loss"):
        best = min(progress["val_loss"], key=lambda p: p["value"])
        best_epoch = max(0, math.ceil(best.get("epoch", 0)) - 1)
    return {
        "percentage_done": progress.get("percentage_done", 0.0),
        "epochs_completed": progress.get("epochs_completed", 0),
        "steps_completed": progress.get("steps_completed", 0),
        "steps_per_epoch": progress.get("steps_per_epoch"),
        "elapsed_time": round(elapsed, 3),
        "train_loss": train[-1]["value"] if train else None,
        "val_loss": val[-1]["value"] if val else None,
        "best_epoch": best_epoch,
        "metrics": {"keys": ["train_loss", "val_loss"], "metrics": {"train_loss": train, "val_loss": val}},
    }


def empty_status_details() -> dict[str, Any]:
    return status_details_from_progress({}, 0.0)


def append_status_log(doc: dict[str, Any], message: str, detail: str | None = None) -> list[dict[str, Any]]:
    logs = list(doc.get("status_logs") or [])
    logs.append({"updated_at": utc_now(), "message": message, "detail": detail})
    return logs


class CustomizationTrainer:
    """Runs customization jobs one at a time, each in a spawned worker process; the others wait as pending."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.store: EntityStore = ctx.store
        self.settings = ctx.settings
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cancel_requested: set[str] = set()
        self._running_job: str | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._last_clock_update = 0.0
        self._thread = threading.Thread(target=self._loop, name="customization-trainer", daemon=True)

    # -- public API used by the router

    def start(self) -> None:
        self._thread.start()

    def submit(self, job_id: str) -> None:
        doc = self.store.get(JOB_KIND, job_id)
        self.store.update(JOB_KIND, job_id, {
            "status": "pending",
            "status_logs": append_status_log(doc, "TrainingJobPending", "Waiting for the training worker."),
        })
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Pending -> cancelled at once; running -> cancelling, and the monitor ends the worker."""
        with self._lock:
            doc = self.store.get(JOB_KIND, job_id)
            status = doc["status"]
            if status in ("created", "pending"):
                return self._finish(job_id, "cancelled", "TrainingJobCancelled", "Cancelled before training started.")
            if status in ("running", "cancelling"):
                self._cancel_requested.add(job_id)
                return self.store.update(JOB_KIND, job_id, {
                    "status": "cancelling",
                    "status_logs": append_status_log(doc, "TrainingJobCancelling", "Stopping the training worker."),
                })
        return doc

    def running_process_pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def shutdown(self) -> None:
        self._stop.set()
        running_job = self._running_job
        process = self._process
        if process is not None and process.is_alive():
            _stop_process(process)
        self._thread.join(timeout=TERMINATE_GRACE_S * 3)
        for job_id in self._drain_queue() + ([running_job] if running_job else []):
            doc = self.store.get(JOB_KIND, job_id)
            if doc and doc["status"] not in TERMINAL_STATUSES:
                self._finish(job_id, "failed", "PlatformStopped",
                             f"The platform stopped while this job was {doc['status']}. Submit it again.")

    # -- internals

    def _drain_queue(self) -> list[str]:
        drained = []
        while True:
            try:
                drained.append(self._queue.get_nowait())
            except queue.Empty:
                return drained

    def _finish(self, job_id: str, status: str, message: str, detail: str | None, **extra: Any) -> dict[str, Any]:
        doc = self.store.get(JOB_KIND, job_id)
        details = {**(doc.get("status_details") or {}), **extra.pop("status_details", {}), "status": status}
        return self.store.update(JOB_KIND, job_id, {
            "status": status,
            "status_details": details,
            "status_logs": append_status_log(doc, message, detail),
            **extra,
        })

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._run_job(job_id)
            except Exception as exc:  # keep the service alive for the next job
                log.exception("customization job %s failed in the platform", job_id)
                self._finish(job_id, "failed", "TrainingJobFailed", f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self._running_job = None
                self._process = None
                self._cancel_requested.discard(job_id)

    def _prepare(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Everything the worker needs, checked here first so that bad data fails the job without a worker."""
        from .models import resolve_model_path

        job_id = doc["id"]
        dataset = doc["dataset"]
        dataset_label = f"{dataset['namespace']}/{dataset['name']}"
        repo_dir = dataset_files_dir(self.ctx, dataset["namespace"], dataset["name"])
        train_files = split_files(repo_dir, TRAINING_SPLIT)
        if not train_files:
            raise TrainingDataError(f"dataset {dataset_label} has no training file ({TRAINING_SPLIT}/*.jsonl)")
        train_rows = read_split(repo_dir, TRAINING_SPLIT, dataset_label)
        val_rows = read_split(repo_dir, VALIDATION_SPLIT, dataset_label)
        requested = (doc.get("dataset_parameters") or {}).get("num_hard_negatives")
        config = doc["config_snapshot"]
        target = config["target"]
        base_model_path = resolve_model_path(self.ctx, f"{target['namespace']}/{target['name']}")
        job_dir = self.settings.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        hp = doc["hyperparameters"]
        return {
            "job_id": job_id,
            "job_dir": str(job_dir),
            "dataset_dir": str(repo_dir),
            "dataset_label": dataset_label,
            "base_model_path": str(base_model_path),
            "output_dir": str(self.settings.models_dir / job_id),
            "progress_path": str(job_dir / "progress.json"),
            "result_path": str(job_dir / "result.json"),
            "log_path": str(job_dir / "container.log"),
            "hyperparameters": hp,
            "dataset_parameters": doc.get("dataset_parameters") or {},
            "max_seq_length": hp.get("max_seq_length") or config.get("max_seq_length"),
            "precision": config.get("training_precision") or target.get("precision"),
            "threads": worker_threads(),
            "_counts": (len(train_rows), len(val_rows), choose_num_negatives(train_rows, requested)),
        }

    def _run_job(self, job_id: str) -> None:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None or doc["status"] != "pending":
            return  # cancelled (or deleted) while it waited
        self._running_job = job_id
        try:
            spec = self._prepare(doc)
        except Exception as exc:
            from .models import ModelNotFound

            if not isinstance(exc, (TrainingDataError, ModelNotFound, OSError, LookupError)):
                raise
            self._finish(job_id, "failed", "TrainingJobFailed", str(exc))
            return
        n_train, n_val, n_neg = spec.pop("_counts")
        for stale in ("progress_path", "result_path"):
            Path(spec[stale]).unlink(missing_ok=True)
        started_at = time.monotonic()
        with self._lock:
            if job_id in self._cancel_requested or self.store.get(JOB_KIND, job_id)["status"] != "pending":
                return
            doc = self.store.update(JOB_KIND, job_id, {
                "status": "running",
                "status_details": {**empty_status_details(), "status": "running"},
                "status_logs": append_status_log(
                    doc, "TrainingJobRunning",
                    f"Training on {n_train} rows ({n_val} validation rows, {n_neg} hard negative(s) per row).",
                ),
            })
            process = multiprocessing.get_context("spawn").Process(
                target=run_training_worker, args=(spec,), name=f"train-{job_id}", daemon=True
            )
            process.start()
            self._process = process
        self._monitor(job_id, process, spec, started_at)

    def _fold_progress(self, job_id: str, spec: dict[str, Any], started_at: float, last_mtime: int) -> int:
        path = Path(spec["progress_path"])
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime == last_mtime:
            # Nothing new from the worker; still move the clock now and then (each update is a durable write).
            if time.monotonic() - self._last_clock_update >= ELAPSED_UPDATE_S:
                self._last_clock_update = time.monotonic()
                doc = self.store.get(JOB_KIND, job_id)
                details = {**(doc.get("status_details") or {}), "elapsed_time": round(time.monotonic() - started_at, 3)}
                self.store.update(JOB_KIND, job_id, {"status_details": details})
            return last_mtime
        try:
            progress = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return last_mtime
        doc = self.store.get(JOB_KIND, job_id)
        details = {**status_details_from_progress(progress, time.monotonic() - started_at), "status": doc["status"]}
        self.store.update(JOB_KIND, job_id, {"status_details": details})
        return mtime

    def _monitor(self, job_id: str, process: Any, spec: dict[str, Any], started_at: float) -> None:
        last_mtime = 0
        while process.is_alive():
            if job_id in self._cancel_requested or self._stop.is_set():
                _stop_process(process)
                break
            process.join(PROGRESS_POLL_S)
            last_mtime = self._fold_progress(job_id, spec, started_at, last_mtime)
        process.join(TERMINATE_GRACE_S)
        last_mtime = self._fold_progress(job_id, spec, started_at, last_mtime)
        if self._stop.is_set() and job_id not in self._cancel_requested:
            return  # shutdown() marks it
        if job_id in self._cancel_requested:
            shutil.rmtree(spec["output_dir"], ignore_errors=True)
            self._finish(job_id, "cancelled", "TrainingJobCancelled", "Cancelled by request; the worker was stopped.")
            return
        result_path = Path(spec["result_path"])
        result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
        if result is None or result.get("status") != "completed":
            error = (result or {}).get("error") or (
                f"the training worker exited with code {process.exitcode} without a result; "
                f"last log lines: {_log_tail(Path(spec['log_path']))}"
            )
            self._finish(job_id, "failed", "TrainingJobFailed", error)
            return
        self._register_output(job_id, result)

    def _register_output(self, job_id: str, result: dict[str, Any]) -> None:
        from .models import register_model_entity, split_model_ref

        doc = self.store.get(JOB_KIND, job_id)
        ns, name, version = split_model_ref(doc["output_model"])
        target = doc["config_snapshot"]["target"]
        register_model_entity(
            self.store, ns, f"{name}@{version}", target.get("base_model"), Path(result["output_dir"]),
            description=doc.get("description") or f"Fine-tuned by customization job {job_id}",
            peft={"finetuning_type": doc["hyperparameters"].get("finetuning_type", "all_weights")},
            customization_job_id=job_id,
            custom_fields=doc.get("custom_fields") or {},
        )
        details = {"percentage_done": 100.0}
        self._finish(
            job_id, "completed", "TrainingJobCompleted",
            f"Model saved and registered as {doc['output_model']} ({result['global_step']} steps, "
            f"final train loss {result['train_loss']:.4f}).",
            status_details=details,
        )


def _stop_process(process: Any) -> None:
    """SIGTERM, then SIGKILL if the worker has not exited within the grace period."""
    process.terminate()
    process.join(TERMINATE_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join(TERMINATE_GRACE_S)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def dataset_files_dir(ctx: Any, namespace: str, name: str) -> Path:
    """The Data Store folder holding the files of the Entity Store dataset ``namespace/name``.

    The dataset's ``files_url`` must be ``hf://datasets/<ns>/<name>`` (this platform's Data Store).
    """
    doc = ctx.store.get("dataset", f"{namespace}/{name}")
    if doc is None:
        raise LookupError(f"dataset {namespace}/{name} is not in the Entity Store")
    files_url = doc.get("files_url") or f"hf://datasets/{namespace}/{name}"
    prefix = "hf://datasets/"
    if not files_url.startswith(prefix) or files_url[len(prefix):].strip("/").count("/") != 1:
        raise LookupError(
            f"dataset {namespace}/{name} has files_url {files_url!r}; the local platform trains on "
            "'hf://datasets/<namespace>/<name>' repos of its own Data Store"
        )
    repo_ns, repo_name = files_url[len(prefix):].strip("/").split("/")
    from .routers.datastore import repo_files_dir

    folder = Path(repo_files_dir(ctx.settings, "dataset", repo_ns, repo_name))
    if not folder.is_dir():
        raise LookupError(f"dataset {namespace}/{name}: the Data Store has no repo {repo_ns}/{repo_name} ({files_url})")
    return folder
