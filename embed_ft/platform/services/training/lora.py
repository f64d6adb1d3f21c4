"""The ``lora`` and ``lora_merged`` fine-tuning types on the local platform: PEFT LoRA adapters on the
sentence-transformers model's transformer, trained by the same worker as ``all_weights``.

- ``lora``: the saved model folder holds the adapter (``adapter_config.json``, ``adapter_model.safetensors``) and the
  sentence-transformers modules (pooling, normalize, tokenizer); ``adapter_config.json`` names the base weights
  folder, which sentence-transformers loads first and the adapter on top (``model_weights.adapter_base_path``).
- ``lora_merged``: the adapter is merged into the base weights (``merge_and_unload``) and full weights are saved,
  as ``all_weights`` saves them.

``hyperparameters.lora`` is the SDK's ``LoraParameters``: ``adapter_dim`` (rank), ``alpha``, ``adapter_dropout``,
``target_modules``. NeMo's module names (``linear_qkv``, ``linear_proj``, ``linear_fc1``, ``linear_fc2``) are mapped
to a BERT-style encoder's layers; other names are the model's own module names (``query``, ``value``, ...).
peft is imported lazily: only a LoRA job pays for it, and only in the worker process.
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_ADAPTER_DIM = 8
DEFAULT_ALPHA = 16
# NeMo (Megatron) module names -> the matching modules of a BERT-style encoder (regex over full module names).
NEMO_MODULES = {
    "linear_qkv": r"attention\.self\.(?:query|key|value)",
    "linear_proj": r"attention\.output\.dense",
    "linear_fc1": r"intermediate\.dense",
    "linear_fc2": r"layer\.\d+\.output\.dense",
}


class LoraSetupError(ValueError):
    """``hyperparameters.lora`` that cannot be applied to this model (unknown module names, wildcards)."""


def target_modules_pattern(names: list[str] | None) -> str | None:
    """One PEFT ``target_modules`` regex for ``names`` (NeMo names mapped, others taken as module-name suffixes);
    None (PEFT's default for the model type: query and value for BERT) when no names are given."""
    if not names:
        return None
    parts = []
    for name in names:
        if "*" in name:
            raise LoraSetupError(
                f"lora.target_modules {name!r}: wildcards are not supported on the local platform; "
                f"name modules ({', '.join(NEMO_MODULES)} or the model's own, e.g. 'query')"
            )
        parts.append(NEMO_MODULES.get(name, re.escape(name)))
    return rf"(?:.*\.)?(?:{'|'.join(parts)})"


def lora_config(lora: dict[str, Any]) -> Any:
    """The peft ``LoraConfig`` of ``hyperparameters.lora`` (defaults: rank 8, alpha 16, no dropout)."""
    from peft import LoraConfig, TaskType  # lazy: heavy, only for LoRA jobs (in the worker process)

    return LoraConfig(
        r=int(lora.get("adapter_dim") or DEFAULT_ADAPTER_DIM),
        lora_alpha=int(lora.get("alpha") or DEFAULT_ALPHA),
        lora_dropout=float(lora.get("adapter_dropout") or 0.0),
        target_modules=target_modules_pattern(lora.get("target_modules")),
        task_type=TaskType.FEATURE_EXTRACTION,
    )


def add_lora_adapter(model: Any, lora: dict[str, Any]) -> str:
    """Wrap the transformer of a SentenceTransformer ``model`` in a PEFT LoRA model (only the adapter trains);
    returns a line for the container log."""
    from peft import get_peft_model  # lazy: see above

    transformer = model[0]
    try:
        transformer.model = get_peft_model(transformer.model, lora_config(lora))
    except ValueError as exc:  # e.g. "Target modules ... not found in the base model"
        raise LoraSetupError(f"hyperparameters.lora does not fit this model: {exc}") from None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"LoRA adapter: {trainable:,} trainable of {total:,} parameters ({100.0 * trainable / total:.2f}%)"


def finish_lora(model: Any, finetuning_type: str) -> None:
    """Before saving: ``lora_merged`` merges the adapter into the base weights; ``lora`` keeps the adapter apart."""
    if finetuning_type == "lora_merged":
        transformer = model[0]
        transformer.model = transformer.model.merge_and_unload()
