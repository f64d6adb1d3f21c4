"""The training worker: sentence-transformers fine-tuning in a spawned process (the platform process never imports
torch for training).

It talks to the platform through three files under ``<home>/jobs/<job id>/``: ``progress.json`` (rewritten
atomically at every step/log/eval and folded into the job document by the service's monitor), ``result.json``
(written once at the end) and ``container.log`` (its stdout/stderr).

Loss: MultipleNegativesRankingLoss over (anchor, positive, negative_1..n), so every other positive and negative
in the batch counts as a negative as well as the row's own hard negatives.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from embed_ft.formats.files import atomic_write_text
from embed_ft.nemo.v1.customization import LORA_FINETUNING_TYPES

from .data import TRAINING_SPLIT, VALIDATION_SPLIT, choose_num_negatives, read_split, triplet_columns
from .lora import add_lora_adapter, finish_lora

# Validation loss is computed on at most this many rows, so that evaluating it stays cheap on a CPU.
MAX_VALIDATION_ROWS = 512
# The worker rewrites progress.json at most this often between log/eval/epoch events.
PROGRESS_MIN_INTERVAL_S = 1.0
# Validation passes of a job without val_check_interval (the last step always adds one).
VALIDATIONS_PER_JOB = 3


class NonFiniteLoss(ArithmeticError):
    """The training (or validation) loss became NaN or infinite: the job fails and no model is saved."""


def check_loss(value: float, step: int, what: str = "loss") -> float:
    """``value`` if finite, else ``NonFiniteLoss`` naming the step (the job's error text)."""
    if math.isfinite(value):
        return value
    name = str(value)  # "nan", "inf", "-inf": never the JSON token NaN/Infinity in the job's documents
    raise NonFiniteLoss(
        f"{what} became {name} at step {step}: training diverged (lower the learning rate or "
        "the weight decay); no model was saved"
    )


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
        import ctypes  # only here: Linux's prctl

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
        raise SystemExit(1) from exc


def bf16_supported(device: str) -> bool:
    """bf16 mixed precision where the hardware computes bf16 natively: CUDA GPUs that support it, and CPUs with
    AVX512-BF16/AMX (oneDNN's check). Elsewhere bf16 would be emulated, slower than fp32, so the job trains in fp32."""
    import torch  # the worker process only

    if device == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.backends.mkldnn.is_available()) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # type: ignore[no-untyped-call]


def _train(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    # Heavy libraries, imported in the worker process only (the platform process never loads them for training).
    import torch

    torch.set_num_threads(threads)
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss  # type: ignore[no-redef]

    hp = spec["hyperparameters"]
    dataset_parameters = spec.get("dataset_parameters") or {}
    seed = int(hp.get("seed", 42))
    started = time.monotonic()
    progress_path = Path(spec["progress_path"])
    progress: dict[str, Any] = {
        "phase": "loading",
        "percentage_done": 0.0,
        "steps_completed": 0,
        "steps_per_epoch": None,
        "epochs_completed": 0,
        "train_loss": [],
        "val_loss": [],
        "max_steps": None,
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
    print(
        f"training rows: {len(train_rows)}, validation rows: {len(val_rows)}, hard negatives per row: {num_negatives}"
    )

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(spec["base_model_path"], device=device, local_files_only=True)
    served_len = model.max_seq_length  # max_seq_length truncates training inputs; the saved model keeps its own
    requested_len = spec.get("max_seq_length")
    if requested_len:
        limit = getattr(getattr(model[0], "auto_model", None), "config", None)
        limit = getattr(limit, "max_position_embeddings", None) or requested_len
        if requested_len > limit:
            print(f"max_seq_length {requested_len} exceeds the model's {limit} positions; using {limit}")
        model.max_seq_length = min(int(requested_len), int(limit))
    print(f"device: {device}, torch threads: {threads}, max_seq_length: {model.max_seq_length}")
    finetuning_type = hp.get("finetuning_type") or "all_weights"
    if finetuning_type in LORA_FINETUNING_TYPES:  # lora / lora_merged: PEFT adapters (lora.py)
        print(add_lora_adapter(model, hp.get("lora") or {}))

    # The API fills every default (the local profile's), so the job document holds each value explicitly.
    batch_size = int(hp["batch_size"])
    epochs = int(hp["epochs"])
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
    use_bf16 = "bf16" in precision and bf16_supported(device)
    use_fp16 = device == "cuda" and not use_bf16 and precision in ("16", "fp16", "16-mixed")
    print(
        f"training precision: {'bf16 mixed' if use_bf16 else 'fp16 mixed' if use_fp16 else 'fp32'} "
        f"(requested {precision or 'none'})"
    )

    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(spec["job_dir"]) / "trainer"),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=float(hp["learning_rate"]),
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
        def on_train_begin(
            self, args: Any, state: Any, control: Any, train_dataloader: Any = None, **kwargs: Any
        ) -> None:
            nonlocal steps_per_epoch
            if train_dataloader is not None:
                steps_per_epoch = max(1, len(train_dataloader))
            progress.update(phase="training", steps_per_epoch=steps_per_epoch, max_steps=state.max_steps)
            write_progress()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress["steps_completed"] = state.global_step
            progress["percentage_done"] = round(100.0 * state.global_step / max(1, state.max_steps), 2)
            if state.global_step >= state.max_steps and eval_dataset is not None:
                control.should_evaluate = True  # always end with a validation loss
            write_progress(force=state.global_step >= state.max_steps)

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress["epochs_completed"] = int(round(state.epoch or 0))
            write_progress()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            logs = logs or {}
            point = {"step": state.global_step, "epoch": round(float(state.epoch or 0), 4)}
            if "loss" in logs:
                progress["train_loss"].append({**point, "value": check_loss(float(logs["loss"]), state.global_step)})
            if "eval_loss" in logs:
                value = check_loss(float(logs["eval_loss"]), state.global_step, "validation loss")
                series = progress["val_loss"]
                if not series or series[-1]["step"] != state.global_step:
                    series.append({**point, "value": value})
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
    check_loss(float(output.training_loss), int(trainer.state.global_step))  # steps between two logs, too

    # Save next to the final folder, then rename: a half-written model never appears under its real name.
    final_dir = Path(spec["output_dir"])
    staging_dir = final_dir.with_name(f".{final_dir.name}.partial")
    shutil.rmtree(staging_dir, ignore_errors=True)
    finish_lora(model, finetuning_type)  # lora_merged: merged full weights; lora: the adapter on its base
    model.max_seq_length = served_len
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
        "finetuning_type": finetuning_type,
        "train_rows": len(train_rows),
        "validation_rows": len(val_rows),
    }
