"""Where a cold evaluation's encode time goes, and what batching, tokenization and runtime changes buy (issue 25,
item 3).

    python bench/bench_encode_profile.py [--docs 160] [--rounds 2] [--only NAME ...]

The evaluator's cold pass over a BEIR corpus is: documents in ``length_sorted_order`` (longest first, by characters,
as ``SentenceTransformer.encode`` orders them, so that batches equal BEIR's), chunks of 64 handed to the served
model, ``encode`` with batch 32, which tokenizes each batch with the model's Rust ("fast") tokenizer, padding to the
batch's longest text and truncating at max_seq_length (256), then runs the transformer. This script takes the first
``--docs`` SciFact documents (title + text) and times, interleaved round by round on the same texts:

- ``torch`` / ``onnx``: that path on torch fp32 and on ONNX Runtime fp32 (``auto``'s choice on an AMD EPYC);
- ``tokenize``: the tokenization of the same batches alone (its share of a pass);
- ``onnx-token-sorted``: batches sorted by token count instead of characters (less padding);
- ``onnx-b16`` / ``onnx-b64`` / ``onnx-b128``: other encode batch sizes;
- ``onnx-1-thread``: ONNX Runtime with one intra-op thread instead of torch's count.

Figures per variant: median wall seconds and CPU seconds (this process's user + system time: less sensitive to a
shared machine than wall time), the ratio to ``onnx``, and padded tokens / real tokens. Prints a table, then ONE JSON
line.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/common.py, next to this script)

common.offline_hub()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from embed_ft.platform.services.evaluation.embedders import length_sorted_order  # noqa: E402
from embed_ft.platform.services.inference_backend import _onnx_module, apply_backend, export_onnx  # noqa: E402
from embed_ft.platform.services.model_weights import bundled_minilm_path  # noqa: E402

CHUNK = 64  # the evaluator's chunk (Embedder.batch_size) handed to the served model


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_docs(count: int) -> list[str]:
    docs = []
    with (common.SCIFACT_DIR / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            docs.append(((doc.get("title") or "") + " " + (doc.get("text") or "")).strip())
            if len(docs) == count:
                break
    return docs


def chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[start : start + size] for start in range(0, len(order), size)]


def variants(docs: list[str], model_torch: Any, model_onnx: Any, model_onnx_1: Any) -> dict[str, tuple[Callable, list]]:
    """name -> (one pass, the encode batches it forms, for the padding figure)."""
    token_counts = np.array(
        [len(ids) for ids in model_torch.tokenizer(docs, truncation=True, max_length=256)["input_ids"]]
    )
    by_chars = length_sorted_order(docs)
    by_tokens = np.argsort(-token_counts, kind="stable")

    def encode_pass(model: Any, order: np.ndarray, batch: int) -> Callable[[], None]:
        def run() -> None:
            for chunk in chunks(order, max(CHUNK, batch)):
                model.encode([docs[i] for i in chunk], batch_size=batch, convert_to_numpy=True)

        return run

    def tokenize_pass() -> None:
        for batch in chunks(by_chars, 32):
            model_torch.tokenize([docs[i] for i in batch])

    table: dict[str, tuple[Callable, list]] = {
        "torch": (encode_pass(model_torch, by_chars, 32), chunks(by_chars, 32)),
        "onnx": (encode_pass(model_onnx, by_chars, 32), chunks(by_chars, 32)),
        "tokenize": (tokenize_pass, chunks(by_chars, 32)),
        "onnx-token-sorted": (encode_pass(model_onnx, by_tokens, 32), chunks(by_tokens, 32)),
        "onnx-1-thread": (encode_pass(model_onnx_1, by_chars, 32), chunks(by_chars, 32)),
    }
    for batch in (16, 64, 128):
        table[f"onnx-b{batch}"] = (encode_pass(model_onnx, by_chars, batch), chunks(by_chars, batch))
    return {name: (run, [token_counts[b] for b in batches]) for name, (run, batches) in table.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    path = bundled_minilm_path()
    docs = load_docs(args.docs)
    model_torch = SentenceTransformer(str(path), device="cpu", local_files_only=True).eval()
    model_onnx = apply_backend(SentenceTransformer(str(path), device="cpu", local_files_only=True), path, "cpu", "onnx")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ONNX session takes torch's thread count when it is created
    model_onnx_1 = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    model_onnx_1[0].model = _onnx_module(model_onnx_1[0].model.config, export_onnx(model_onnx_1, path))
    torch.set_num_threads(threads)
    table = variants(docs, model_torch, model_onnx, model_onnx_1)
    names = [name for name in table if not args.only or name in args.only or name == "onnx"]
    for name in names:  # warm-up: first calls allocate
        table[name][0]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started, started_cpu = time.perf_counter(), cpu_seconds()
            table[name][0]()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(cpu_seconds() - started_cpu)
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {wall[n][-1]:.1f}s" for n in names), file=sys.stderr)
    rows = {}
    for name in names:
        batches = table[name][1]
        padded = sum(int(b.max()) * len(b) for b in batches)
        real = sum(int(b.sum()) for b in batches)
        rows[name] = {
            "wall_s": round(statistics.median(wall[name]), 3),
            "cpu_s": round(statistics.median(cpu[name]), 3),
            "padded_over_real_tokens": round(padded / real, 4),
        }
    for row in rows.values():
        row["wall_vs_onnx"] = round(row["wall_s"] / rows["onnx"]["wall_s"], 3)
        row["cpu_vs_onnx"] = round(row["cpu_s"] / rows["onnx"]["cpu_s"], 3)
    print(f"{'variant':20}{'wall s':>9}{'cpu s':>9}{'wall/onnx':>11}{'cpu/onnx':>10}{'padded/real':>13}")
    for name, row in rows.items():
        print(
            f"{name:20}{row['wall_s']:>9}{row['cpu_s']:>9}{row['wall_vs_onnx']:>11}{row['cpu_vs_onnx']:>10}"
            f"{row['padded_over_real_tokens']:>13}"
        )
    common.print_json_line(
        {
            "bench": "encode_profile",
            "machine": common.machine_info(),
            "docs": len(docs),
            "rounds": args.rounds,
            "threads": threads,
            "variants": rows,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
