"""The figures of ``bench/gpu_check.sh``'s runs beside the CPU ones recorded in BENCHMARKS.md.

    python bench/gpu_report.py [--mode gpu|dry] TRAINING_LOG EVALUATOR_LOG

Each log ends with its bench's one JSON line (bench_training.py, bench_evaluator.py); the CPU column is copied from
BENCHMARKS.md (section and date named in ``CPU_REFERENCE``). Prints one table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# (figure, path in the bench's JSON line, CPU value, where the CPU value is recorded)
CPU_REFERENCE: list[tuple[str, str, str, float, str]] = [
    (
        "training: triplets/s, plain script",
        "training",
        "train_compute.plain_triplets_per_s",
        1.242,
        "BENCHMARKS 3, 2026-11-26, 2-core AMD EPYC, 2 steps",
    ),
    (
        "training: triplets/s, platform job",
        "training",
        "train_compute.platform_triplets_per_s",
        1.185,
        "BENCHMARKS 3, 2026-11-26, 2-core AMD EPYC, 2 steps",
    ),
    (
        "training: ratio platform/plain",
        "training",
        "train_compute.ratio_platform_over_plain",
        0.954,
        "BENCHMARKS 3, 2026-11-26 (goal >= 0.95)",
    ),
    (
        "evaluation: BEIR wall s (SciFact test)",
        "evaluator",
        "beir_s",
        953.29,
        "BENCHMARKS 1, 2026-11-26, 2-core AMD EPYC, 5,183 docs",
    ),
    (
        "evaluation: our job wall s, cold",
        "evaluator",
        "ours_job_cold_s",
        815.69,
        "BENCHMARKS 1, 2026-11-26, torch runtime",
    ),
    (
        "evaluation: wall-time ratio ours/BEIR",
        "evaluator",
        "wall_time_ratio",
        0.8557,
        "BENCHMARKS 1, 2026-11-26, torch runtime (goal <= 0.67)",
    ),
    (
        "evaluation: max |metric - BEIR|",
        "evaluator",
        "max_abs_metric_diff_vs_beir_unrounded",
        0.0,
        "BENCHMARKS 1, 2026-11-26 (goal <= 1e-4)",
    ),
    ("evaluation: nDCG@10", "evaluator", "ndcg_cut_10", 0.64508, "BENCHMARKS 1, 2026-11-26"),
]


def last_json_line(log: Path) -> dict[str, Any]:
    """The last line of ``log`` that is a JSON object (the bench's figures)."""
    for line in reversed(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise SystemExit(
        f"{log}: no JSON line (did the bench finish?); its last lines:\n"
        + "\n".join(log.read_text(errors="replace").splitlines()[-10:])
    )


def lookup(doc: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def report(mode: str, figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    device = figures["evaluator"].get("device") or figures["training"].get("device")
    rows = [
        {"figure": name, "cpu": cpu, "this_run": lookup(figures[bench], path), "cpu_source": source}
        for name, bench, path, cpu, source in CPU_REFERENCE
    ]
    extra = {
        "runtime": figures["evaluator"].get("runtime"),
        "evaluator_docs": figures["evaluator"].get("num_docs"),
        "training_steps": lookup(figures["training"], "steps.platform"),
    }
    return {"bench": "gpu_check", "mode": mode, "device": device, "rows": rows, **extra}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("gpu", "dry"), default="gpu")
    parser.add_argument("training_log", type=Path)
    parser.add_argument("evaluator_log", type=Path)
    args = parser.parse_args()
    result = report(
        args.mode, {"training": last_json_line(args.training_log), "evaluator": last_json_line(args.evaluator_log)}
    )
    note = " (DRY RUN on a CPU with tiny sizes: not comparable)" if args.mode == "dry" else ""
    print(f"device: {result['device']}{note}; evaluator runtime: {result['runtime']}")
    print(f"{'figure':42}{'CPU':>12}{'this run':>12}  CPU source")
    for row in result["rows"]:
        value = row["this_run"]
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
        print(f"{row['figure']:42}{row['cpu']:>12.4g}{shown:>12}  {row['cpu_source']}")
    print(json.dumps(result, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
