"""Benchmark: clean + split + write 684,100 SPECTER-like rows as NeMo JSONL, against the tutorial's method.

    python bench/bench_format.py [--rows 684100] [--out DIR]

Each method runs in its own child process (so peak RSS is its own) on the same synthetic data: titles of random
words, ~80 characters, ~5 rows per query paper on average. Data generation is not timed.
- pipeline: `embed_ft.data.specter.build_triplet_splits` from the Arrow table `datasets` would hand over
  (clean, leak-free split of every row, atomic Arrow-vectorised JSONL write).
- tutorial_loop: the tutorial's method from the same Arrow table: rows to Python (`to_pylist`, cheaper than
  iterating a `datasets.Dataset`), seeded shuffle, slicing into splits, then a Python loop calling `json.dumps` per
  row and writing lines. No cleaning, no leak-free split. Its loop alone is reported too (`loop_only_wall_s`).
Peak RSS covers the timed section (input data included, shown as "input"). Each method runs `--repeat` times
(alternating); medians are reported. Prints a table, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
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
        return [" ".join(w).capitalize()[:n].rstrip() for w, n in zip(words, lengths, strict=True)]

    group_sizes = rng.integers(1, 10, size=rows)  # more than enough groups
    group_of_row = np.repeat(np.arange(rows), group_sizes)[:rows]
    distinct = titles(int(group_of_row[-1]) + 1)
    queries = [distinct[g] for g in group_of_row]
    return queries, titles(rows), titles(rows)


def peak_rss_mib() -> float:
    """Peak resident set size since the last `reset_peak_rss()` (Linux VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def reset_peak_rss() -> None:
    """Start peak RSS afresh, so it covers the timed section and not the data generation before it."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def synthetic_table(rows: int):
    """The Arrow table `datasets` hands over for embedding-data/SPECTER: one `set` column of [query, pos, neg]."""
    import pyarrow as pa

    queries, positives, negatives = synthetic_columns(rows)
    sets = pa.array([[q, p, n] for q, p, n in zip(queries, positives, negatives, strict=True)], pa.list_(pa.string()))
    return pa.table({"set": sets})


def run_pipeline(rows: int, out: Path) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    from embed_ft.data.specter import build_triplet_splits
    from embed_ft.data.splitting import SplitOptions

    table = synthetic_table(rows)
    reset_peak_rss()
    rss_before = peak_rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    summary = build_triplet_splits(table, out, options=SplitOptions(sample_size=None), data_version="bench")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "rows_written": sum(summary.rows.values()),
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "bytes": sum(Path(p).stat().st_size for p in summary.paths.values()),
    }


def run_tutorial_loop(rows: int, out: Path) -> dict:
    table = synthetic_table(rows)
    reset_peak_rss()
    rss_before = peak_rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    data = table.column("set").to_pylist()  # rows as Python objects: the cheapest way out of the Arrow table
    loop_start = time.perf_counter()
    order = list(range(len(data)))
    random.Random(42).shuffle(order)
    test, validation = 1_000, int(0.05 * (len(order) - 1_000))
    parts = {
        "testing": order[:test],
        "validation": order[test : test + validation],
        "training": order[test + validation :],
    }
    sizes = {}
    for name, indices in parts.items():
        path = out / name / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for i in indices:
                s = data[i]
                handle.write(json.dumps({"query": s[0], "pos_doc": s[1], "neg_doc": [s[2]]}) + "\n")
        sizes[name] = len(indices)
    end = time.perf_counter()
    wall, cpu = end - start, time.process_time() - cpu_start
    return {
        "rows_written": sum(sizes.values()),
        "wall_s": wall,
        "cpu_s": cpu,
        "loop_only_wall_s": end - loop_start,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "bytes": sum((out / n / f"{n}.jsonl").stat().st_size for n in sizes),
    }


METHODS = {"pipeline": run_pipeline, "tutorial_loop": run_tutorial_loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=684_100)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    parser.add_argument("--method", choices=sorted(METHODS), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()

    if args.method:
        print(json.dumps(METHODS[args.method](args.rows, args.out)))
        return

    runs: dict[str, list[dict]] = {"pipeline": [], "tutorial_loop": []}
    with tempfile.TemporaryDirectory(prefix="bench_format_") as tmp:
        base = args.out or Path(tmp)
        for _ in range(args.repeat):
            for method in runs:  # alternate, so a burst of load on the shared machine hits both
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--method",
                        method,
                        "--rows",
                        str(args.rows),
                        "--out",
                        str(base / method),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs[method].append(json.loads(child.stdout.strip().splitlines()[-1]))

    def median(method: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[method])

    results = {m: {k: median(m, k) for k in runs[m][0]} for m in runs}
    for r in results.values():
        r["rows_per_s"] = r["rows_written"] / r["wall_s"]
    print(f"median of {args.repeat} run(s) per method, each in a fresh process")
    header = f"{'method':<15}{'rows':>10}{'wall s':>9}{'CPU s':>8}{'rows/s':>12}"
    print(header + f"{'peak RSS MiB':>14}{'input MiB':>14}{'MiB out':>9}")
    for method, r in results.items():
        print(
            f"{method:<15}{r['rows_written']:>10,.0f}{r['wall_s']:>9.2f}{r['cpu_s']:>8.2f}{r['rows_per_s']:>12,.0f}"
            f"{r['peak_rss_mib']:>14.0f}{r['rss_before_mib']:>14.0f}{r['bytes'] / 2**20:>9.1f}"
        )
    speedup = results["pipeline"]["rows_per_s"] / results["tutorial_loop"]["rows_per_s"]
    cpu_speedup = results["tutorial_loop"]["cpu_s"] / results["pipeline"]["cpu_s"]
    loop_only_speedup = results["tutorial_loop"]["loop_only_wall_s"] / results["pipeline"]["wall_s"]
    load = os.getloadavg()[0]
    print(
        f"speed-up: {speedup:.2f}x wall ({loop_only_speedup:.2f}x against the json.dumps loop alone, without "
        f"getting rows out of Arrow), {cpu_speedup:.2f}x CPU seconds. Goal: <= 5 s for all rows, >= 3x the loop."
    )
    print(f"1-min load average {load:.1f} on {os.cpu_count()} CPUs: wall figures suffer when the machine is busy.")
    print(
        json.dumps(
            {
                "benchmark": "bench_format",
                "rows": args.rows,
                "repeat": args.repeat,
                "cpu_count": os.cpu_count(),
                "load_avg_1m": round(load, 2),
                "speedup": round(speedup, 2),
                "speedup_vs_loop_only": round(loop_only_speedup, 2),
                "cpu_speedup": round(cpu_speedup, 2),
                **{f"{m}_{k}": round(v, 3) for m, r in results.items() for k, v in r.items()},
                **{f"{m}_wall_s_all": [round(r["wall_s"], 3) for r in runs[m]] for m in runs},
            }
        )
    )


if __name__ == "__main__":
    main()
