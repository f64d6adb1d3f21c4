"""Benchmark (issue 15, item 5): which runtime computes the served model's transformer fastest on this machine, and
how far each moves the retrieval metrics from the PyTorch path (the goal: within 1e-4, and 0.67x the time).

1. Data: SciFact's 300 test queries over a corpus of every judged test document plus the first ``--extra-docs``
   others (default 1,100: about 1,400 documents, the size of the issue's side-by-side with BEIR).
2. Model: the packaged all-MiniLM-L6-v2 at its 256 tokens, batch 32 (the evaluator's settings).
3. Backends, each behind sentence-transformers' own ``encode`` (same tokenization, length-sorted batching, pooling,
   normalization; only the transformer forward moves):
   - ``torch``: fp32, the product's default and BEIR's computation (the reference);
   - ``onnx``: ONNX Runtime fp32, the product's ``EMBED_FT_INFERENCE_BACKEND=onnx`` (``apply_backend``);
   - ``openvino-f32`` / ``openvino-bf16``: OpenVINO reading the same exported ONNX graph, with its inference
     precision hint (bench only; ``pip install openvino``; skipped when absent);
   - ``torch-bf16``: torch under CPU bf16 autocast (AVX512-BF16/AMX), for reference;
   - ``torch-compile``: fp32, the transformer compiled by ``torch.compile`` (inductor, dynamic shapes, weights frozen
     for inference); the first round includes the compilation.
4. Timing: ``--rounds`` rounds, backends interleaved within each round (so load drifts hit all of them); the
   median encode time of corpus + queries per backend, and its ratio to torch's.
5. Fidelity: exact cosine search (the evaluator's ``exact_search``) + pytrec_eval (``compute_metrics``): the
   largest absolute difference of nDCG@10, recall@10 and MAP@10 from torch's, and of the embeddings themselves.

    python bench/bench_inference_backends.py [--extra-docs 1100] [--rounds 3] [--only torch onnx ...] [--gemm-check]

One JSON line per backend, then a summary line, on stdout; also appended to bench/out/inference_backends.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from embed_ft.platform.services.evaluation.metrics import compute_metrics  # noqa: E402
from embed_ft.platform.services.evaluation.retrieval import exact_search  # noqa: E402
from embed_ft.platform.services.inference_backend import apply_backend, export_onnx  # noqa: E402
from embed_ft.platform.services.model_weights import bundled_minilm_path  # noqa: E402
from embed_ft.platform.services.training.worker import bf16_supported  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"
OUT = REPO / "bench" / "out" / "inference_backends.jsonl"
METRICS = ["ndcg_cut_10", "recall_10", "map_cut_10"]
BATCH = 32


def load_subset(extra_docs: int):
    """Test queries, their qrels, and a corpus of the judged documents plus the first `extra_docs` others."""
    qrels: dict[str, dict[str, int]] = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    judged = {d for docs in qrels.values() for d in docs}
    corpus: dict[str, str] = {}
    others = 0
    for line in (SCIFACT / "corpus.jsonl").open(encoding="utf-8"):
        doc = json.loads(line)
        did = str(doc["_id"])
        if did in judged or others < extra_docs:
            others += did not in judged
            corpus[did] = (doc.get("title", "") + " " + doc.get("text", "")).strip()
    queries = {
        str(q["_id"]): q["text"]
        for q in map(json.loads, (SCIFACT / "queries.jsonl").open(encoding="utf-8"))
        if str(q["_id"]) in qrels
    }
    return corpus, queries, qrels


def openvino_module(config, onnx_path: Path, precision: str):
    """A torch module in the Hugging Face model's place whose forward OpenVINO computes (as the product's ONNX one)."""
    import openvino as ov  # bench only

    compiled = ov.Core().compile_model(
        str(onnx_path),
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        },
    )

    class OpenVinoTransformer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = config
            self.anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)  # says "cpu" to the library

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            out = compiled(
                {
                    "input_ids": input_ids.numpy(),
                    "attention_mask": attention_mask.numpy(),
                    "token_type_ids": token_type_ids.numpy(),
                }
            )
            return {"last_hidden_state": torch.from_numpy(np.asarray(out[0]))}

    return OpenVinoTransformer()


def build_encoders(names: list[str]) -> dict:
    """name -> encode(texts) for every backend this machine can run."""
    from sentence_transformers import SentenceTransformer

    path = bundled_minilm_path()

    def model():
        return SentenceTransformer(str(path), device="cpu")

    def plain(m):
        return lambda texts: m.encode(texts, batch_size=BATCH, convert_to_numpy=True, normalize_embeddings=True)

    encoders = {}
    for name in names:
        try:
            if name == "torch":
                encoders[name] = plain(model())
            elif name == "onnx":
                encoders[name] = plain(apply_backend(model(), path, "cpu", "onnx"))
            elif name.startswith("openvino-"):
                m = model()
                m[0].model = openvino_module(m[0].model.config, export_onnx(m, path), name.split("-", 1)[1])
                encoders[name] = plain(m)
            elif name == "torch-bf16":
                if not bf16_supported("cpu"):
                    raise RuntimeError("this CPU has no native bf16")
                m = model()

                def autocast(texts, m=m):
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return m.encode(texts, batch_size=BATCH, convert_to_numpy=True, normalize_embeddings=True)

                encoders[name] = autocast
            elif name == "torch-compile":
                import torch._inductor.config as inductor_config

                inductor_config.freezing = True  # weights as constants: folded and prepacked for oneDNN
                m = model()
                m[0].model = torch.compile(m[0].model, dynamic=True)  # `model`: what Transformer.forward calls
                encoders[name] = plain(m)
        except Exception as exc:  # noqa: BLE001  (an absent optional runtime skips its row, saying why)
            print(f"skipping {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return encoders


def gemm_check() -> dict:
    """Could fp32 be emulated by three bf16 GEMMs (hi x hi + hi x lo + lo x hi) on AMX? Needs a bf16 GEMM with fp32
    output (`torch.mm(..., out_dtype=float32)`), and three bf16 GEMMs cheaper than one fp32 GEMM. One BERT-FFN-sized
    GEMM (180 tokens x 32 texts, 384 -> 1,536), best of 3 x 5 runs."""
    import timeit

    x, w = torch.randn(5760, 384), torch.randn(1536, 384)
    xb, wb = x.bfloat16(), w.bfloat16()
    try:
        torch.mm(xb, wb.T, out_dtype=torch.float32)
        fp32_output = "available"
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        fp32_output = f"unavailable: {str(exc).splitlines()[0][:100]}"
    fp32_ms = min(timeit.repeat(lambda: x @ w.T, number=5, repeat=3)) / 5 * 1e3
    bf16_ms = min(timeit.repeat(lambda: xb @ wb.T, number=5, repeat=3)) / 5 * 1e3
    return {
        "bench": "inference_backends_gemm_check",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "bf16_gemm_fp32_output": fp32_output,
        "fp32_gemm_ms": round(fp32_ms, 1),
        "bf16_gemm_ms": round(bf16_ms, 1),
        "three_bf16_over_fp32": round(3 * bf16_ms / fp32_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra-docs", type=int, default=1100, help="unjudged documents added to the judged ones")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", nargs="*", default=["torch", "onnx", "openvino-f32", "openvino-bf16", "torch-bf16", "torch-compile"]
    )
    parser.add_argument(
        "--gemm-check", action="store_true", help="only: can three bf16 GEMMs emulate an fp32 one here?"
    )
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.gemm_check:
        print(json.dumps(gemm_check()))
        return
    corpus, queries, qrels = load_subset(args.extra_docs)
    doc_ids, docs = list(corpus), list(corpus.values())
    query_ids, query_texts = list(queries), list(queries.values())
    encoders = build_encoders(args.only)
    times: dict[str, list[float]] = {name: [] for name in encoders}
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for round_no in range(args.rounds):
        for name, encode in encoders.items():
            started = time.perf_counter()
            embeddings[name] = (encode(docs), encode(query_texts))
            times[name].append(time.perf_counter() - started)
            print(f"round {round_no + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    scores = {}
    for name, (doc_emb, query_emb) in embeddings.items():
        run = exact_search(query_emb, query_ids, doc_emb, doc_ids, top_k=100)
        scores[name], _ = compute_metrics(qrels, run, METRICS)
    reference = "torch" if "torch" in encoders else next(iter(encoders))
    base_time = statistics.median(times[reference])
    meta = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "num_docs": len(docs),
        "num_queries": len(query_texts),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_end": round(os.getloadavg()[0], 2),
    }
    rows = []
    for name in encoders:
        doc_ref, query_ref = embeddings[reference]
        row = {
            "bench": "inference_backends",
            "backend": name,
            **meta,
            "encode_s_median": round(statistics.median(times[name]), 2),
            "encode_s": [round(t, 2) for t in times[name]],
            "time_ratio_vs_torch": round(statistics.median(times[name]) / base_time, 3),
            **{m: round(scores[name][m], 6) for m in METRICS},
            "max_abs_metric_diff_vs_torch": float(max(abs(scores[name][m] - scores[reference][m]) for m in METRICS)),
            "max_abs_embedding_diff_vs_torch": float(
                max(np.abs(embeddings[name][0] - doc_ref).max(), np.abs(embeddings[name][1] - query_ref).max())
            ),
        }
        rows.append(row)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            print(json.dumps(row))


if __name__ == "__main__":
    main()
