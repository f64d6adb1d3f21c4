"""Benchmark: clean + split + write 684,100 SPECTER-like rows as NeMo JSONL, against the tutorial's method.

    python bench/bench_format.py [--rows 684100] [--out DIR]

Each method runs in its own child process (so peak RSS is its own) on the same synthetic data: titles of random
words, ~80 characters, ~5 rows per query paper on average. Data generation is not timed.
- pipeline: `embed_ft.data.specter.build_triplet_splits` from the Arrow table `datasets` would hand over
  (clean, leak-free split of every row, atomic Arrow-vectorised JSONL write).
- tutorial_loop: the tutorial's method: rows already in Python lists (generous to it), seeded shuffle, slicing into
  splits, then a Python loop calling `json.dumps` per row and writing lines. No cleaning, no leak-free split.
Prints a table, then ONE JSON line with all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLIT_NAMES = ("training", "validation", "testing")


def synthetic_columns(rows: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """(queries, positives, negatives): ~80-character titles, queries repeated 1..9 times (mean 5)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocabulary = np.array(
        "neural network graph protein quantum learning deep model analysis study climate cell gene expression "
        "bayesian inference optimization sparse representation language retrieval attention transformer robust "
        "efficient scalable adaptive clinical trial cohort imaging segmentation molecular dynamics simulation "
        "towards understanding evaluation benchmark dataset method approach framework via using large-scale".split()
    )

    def titles(count: int) -> list[str]:
        words = vocabulary[rng.integers(0, len(vocabulary), size=(count, 14))]
        lengths = np.clip(rng.normal(80, 20, size=count), 25, 200).astype(int)
        return [" ".join(w).capitalize()[:n].rstrip() for w, n in zip(words, lengths)]

    group_sizes = rng.integers(1, 10, size=rows)  # more than enough groups
    group_of_row = np.repeat(np.arange(rows), group_sizes)[:rows]
    distinct = titles(int(group_of_row[-1]) + 1)
    queries = [distinct[g] for g in group_of_row]
    return queries, titles(rows), titles(rows)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run_pipeline(rows: int, out: Path) -> dict:
    import pyarrow as pa

    sys.path.insert(0, str(REPO_ROOT))
    from embed_ft.data.specter import SplitOptions, build_triplet_splits

    queries, positives, negatives = synthetic_columns(rows)
    sets = pa.array([[q, p, n] for q, p, n in zip(queries, positives, negatives)], pa.list_(pa.string()))
    table = pa.table({"set": sets})  # the layout and types `datasets` yields for embedding-data/SPECTER
    del queries, positives, negatives
    rss_before = peak_rss_mib()
    start = time.perf_counter()
    summary = build_triplet_splits(table, out, options=SplitOptions(sample_size=None), data_version="bench")
    wall = time.perf_counter() - start
    return {"rows_written": sum(summary.rows.values()), "wall_s": wall, "rss_before_mib": rss_before,
            "peak_rss_mib": peak_rss_mib(), "bytes": sum(Path(p).stat().st_size for p in summary.paths.values()),
            "rows_per_split": summary.rows}


def run_tutorial_loop(rows: int, out: Path) -> dict:
    queries, positives, negatives = synthetic_columns(rows)
    data = [{"set": [q, p, n]} for q, p, n in zip(queries, positives, negatives)]
    del queries, positives, negatives
    rss_before = peak_rss_mib()
    start = time.perf_counter()
    order = list(range(len(data)))
    random.Random(42).shuffle(order)
    test, validation = 1_000, int(0.05 * (len(order) - 1_000))
    parts = {"testing": order[:test], "validation": order[test : test + validation], "training": order[test + validation :]}
    sizes = {}
    for name, indices in parts.items():
        path = out / name / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for i in indices:
                s = data[i]["set"]
                handle.write(json.dumps({"query": s[0], "pos_doc": s[1], "neg_doc": [s[2]]}) + "\n")
        sizes[name] = len(indices)
    wall = time.perf_counter() - start
    return {"rows_written": sum(sizes.values()), "wall_s": wall, "rss_before_mib": rss_before,
            "peak_rss_mib": peak_rss_mib(), "bytes": sum((out / n / f"{n}.jsonl").stat().st_size for n in sizes),
            "rows_per_split": sizes}


METHODS = {"pipeline": run_pipeline, "tutorial_loop": run_tutorial_loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=684_100)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    parser.add_argument("--method", choices=sorted(METHODS), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()

    if args.method:
        print(json.dumps(METHODS[args.method](args.rows, args.out)))
        return

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_format_") as tmp:
        base = args.out or Path(tmp)
        for method in ("pipeline", "tutorial_loop"):
            child = subprocess.run(
                [sys.executable, __file__, "--method", method, "--rows", str(args.rows), "--out", str(base / method)],
                check=True, capture_output=True, text=True,
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            result["rows_per_s"] = result["rows_written"] / result["wall_s"]
            results[method] = result

    print(f"{'method':<15}{'rows':>10}{'wall s':>9}{'rows/s':>12}{'peak RSS MiB':>14}{'(before) MiB':>14}{'MiB out':>9}")
    for method, r in results.items():
        print(f"{method:<15}{r['rows_written']:>10,}{r['wall_s']:>9.2f}{r['rows_per_s']:>12,.0f}"
              f"{r['peak_rss_mib']:>14.0f}{r['rss_before_mib']:>14.0f}{r['bytes'] / 2**20:>9.1f}")
    speedup = results["pipeline"]["rows_per_s"] / results["tutorial_loop"]["rows_per_s"]
    print(f"speed-up (rows/s): {speedup:.2f}x; goal: <= 5 s for all rows and >= 3x the loop")
    print(json.dumps({
        "benchmark": "bench_format", "rows": args.rows, "cpu_count": os.cpu_count(), "speedup": round(speedup, 2),
        **{f"{m}_{k}": (round(v, 3) if isinstance(v, float) else v) for m, r in results.items() for k, v in r.items()},
    }))


if __name__ == "__main__":
    main()
