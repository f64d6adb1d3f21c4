"""The recipes ``bench_recipe.py`` compares: mining settings (keyword arguments of ``mine_hard_negatives``) and
training settings (loss, epochs, learning rate, batch, training max_seq_length, bf16), by name; the sweep order; and
the recipe chosen on validation queries (the ``scifact`` preset's settings, ``embed_ft/presets.py``)."""

# "mine" = keyword arguments of mine_hard_negatives, "train" = loss and trainer settings.
# The product's recipe until 2026-11-27: 1 negative = the top-ranked unjudged document, MNRL, 3 epochs, lr 2e-5,
# seq 256.
OLD = {
    "mine": {"range_min": 0, "range_max": None, "num_negatives": 1, "sampling_strategy": "top"},
    "train": {"loss": "mnrl", "epochs": 3, "lr": 2e-5, "batch": 32, "seq": 256, "warmup": 0.0},
}
RANKS_3_30 = {"range_min": 3, "range_max": 30, "num_negatives": 1, "sampling_strategy": "random"}


def recipe(
    epochs: int = 2,
    lr: float = 3e-5,
    seq: int = 128,
    *,
    loss: str = "mnrl",
    negatives: int = 1,
    bf16: bool | None = None,
    mine: dict | None = None,
    **train,
) -> dict:
    """One recipe: negatives from ranks 3-30 of the base model (unless `mine` says otherwise), batch 32."""
    settings = {"loss": loss, "epochs": epochs, "lr": lr, "batch": 32, "seq": seq, **train}
    if bf16 is not None:
        settings["bf16"] = bf16
    return {"mine": mine or {**RANKS_3_30, "num_negatives": negatives}, "train": settings}


RECIPES: dict[str, dict] = {
    "old": OLD,
    # the "60-line script" anchor (0.720 on test): negatives sampled from ranks 3-30, 2 epochs, lr 3e-5
    "r330_seq256": recipe(seq=256),
    "r330_seq128": recipe(),
    "r330_seq192": recipe(seq=192),
    "r330_3neg_seq128": recipe(negatives=3),
    # NV-Retriever's TopK-PercPos (95%): top candidates at least 5% below the positive
    "relmargin_top_seq128": recipe(
        mine={"range_min": 0, "range_max": 30, "num_negatives": 1, "sampling_strategy": "top", "relative_margin": 0.05}
    ),
    "gist_r330_seq128": recipe(loss="gist"),
    "cmnrl128_r330_seq128": recipe(3, 5e-5, loss="cmnrl", batch=128, mini_batch=32),
    "r330_seq128_lr5e5_1ep": recipe(1, 5e-5),
    "r330_seq128_3ep": recipe(3),
    # bf16 mixed precision (the NeMo config's training_precision, honoured on CPUs with AVX512-BF16/AMX): measured
    # 1.5x faster per step at seq 256 on this Xeon, which puts the anchor's full 256 tokens inside the 600 s budget
    "r330_seq256_bf16": recipe(seq=256, bf16=True),
    "r330_seq128_bf16": recipe(bf16=True),
    "r330_3neg_seq128_bf16": recipe(negatives=3, bf16=True),
    "r330_seq128_3ep_bf16": recipe(3, bf16=True),
    "r330_3neg_seq256_bf16": recipe(seq=256, negatives=3, bf16=True),
    # 2026-12-01 afternoon: more epochs, a higher rate, and GISTEmbedLoss (the base model as guide drops in-batch
    # and mined negatives it scores above the positive: false negatives on sparsely judged SciFact)
    "r330_seq128_5ep_bf16": recipe(5, bf16=True),
    "gist_r330_seq128_3ep_bf16": recipe(3, loss="gist", bf16=True),
    "r330_seq128_3ep_lr5e5_bf16": recipe(3, 5e-5, bf16=True),
    "r330_seq128_3ep_lr8e5_bf16": recipe(3, 8e-5, bf16=True),
    "r330_seq128_3ep_lr12e5_bf16": recipe(3, 1.2e-4, bf16=True),
    # 2026-12-01 evening: twice the updates for the same compute (batch 16), and a fourth epoch at the chosen rate
    "r330_seq128_3ep_lr8e5_b16_bf16": recipe(3, 8e-5, bf16=True, batch=16),
    "r330_seq128_4ep_lr8e5_bf16": recipe(4, 8e-5, bf16=True),
}
SWEEP_ORDER = [
    "r330_seq256",
    "r330_seq128",
    "r330_3neg_seq128",
    "gist_r330_seq128",
    "relmargin_top_seq128",
    "cmnrl128_r330_seq128",
    "r330_seq128_3ep",
    "r330_seq192",
    "r330_seq128_lr5e5_1ep",
]
# Chosen on validation nDCG@10 (162 held-out train queries; base 0.6528), bench/out/recipe_sweep.jsonl:
#   2026-11-27 (load 5-13): r330_seq128 0.6873;
#   2026-12-01 (quiet): r330_seq256_bf16 0.6834, r330_seq128_bf16 0.6874, r330_3neg_seq128_bf16 0.6856,
#   r330_seq128_3ep_bf16 0.6961 (training 302 s on 647 queries). bf16 costs nothing in quality here and makes a step
#   1.5x faster; 256 tokens and 3 negatives cost 2-3x the time for no gain; the third epoch gains.
#   2026-12-01 afternoon (the machine ~1.4x slower per step than in the morning): r330_seq128_5ep_bf16 0.7216 (over the
#   600 s budget on all train queries), gist_r330_seq128_3ep_bf16 0.6864, and the learning rate at 3 epochs:
#   3e-5 0.6961, 5e-5 0.7191, 8e-5 0.7328, 1.2e-4 0.7296. More learning, not more steps: lr 8e-5 at the same cost.
#   2026-12-01 evening, around lr 8e-5: batch 16 0.7285 (~1.7x the training time), 4 epochs 0.7337 (+0.0009 for 4/3
#   of the time): a plateau, so the choice stands.
#   (The bf16 rows' scores were computed with the model still under accelerate's bf16 autocast; `train` now unwraps
#   it. Measured on the chosen recipe's test score: 2.7e-4 nDCG@10, below the gaps the lr choice rests on.)
CHOSEN = "r330_seq128_3ep_lr8e5_bf16"
