"""Run every fault-injection scenario N times in a row and report each failure (issue 11, item 15: flaky faults).

    python bench/bench_fault_repeat.py                 # every scenario of test_reliability_pipeline.py, 20 times
    python bench/bench_fault_repeat.py -n 5 -k evaluation   # a subset (pytest -k expression), 5 times
    python bench/bench_fault_repeat.py --stop-on-fail --log-dir /tmp/fault-logs

The scenarios are found by collecting ``embed_ft_tests/test_reliability_pipeline.py`` (a new scenario is repeated
without editing this file). Each run is its own pytest process (a fresh platform, ports, Dagster instance), so
a leftover process or port of one run shows up as a failure of the next. Every run's tally line (the fields of
``embed_ft_tests.fault_scenarios.Tally``) is summed per scenario; a failed run's full output is kept under
``--log-dir``. The last line is one JSON object (machine, runs, failures per scenario).

Exit status 0 only if every run of every scenario passed with 0 duplicates, orphans and lost artifacts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import machine_info  # noqa: E402
from embed_ft_tests.fault_scenarios import Tally  # noqa: E402

SCENARIO_FILE = REPO / "embed_ft_tests" / "test_reliability_pipeline.py"
TALLY_FIELDS = [f.name.replace("_", " ") for f in dataclasses.fields(Tally) if f.type in (int, "int")]
MUST_BE_ZERO = ("duplicates", "orphans", "lost artifacts")


def collect(keyword: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(SCENARIO_FILE)]
    if keyword:
        cmd += ["-k", keyword]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if "::" in line and not line.startswith(" ")]


def parse_tally(output: str) -> dict[str, int]:
    totals = dict.fromkeys(TALLY_FIELDS, 0)
    for line in output.splitlines():
        if line.startswith("[reliability]"):
            for name in TALLY_FIELDS:
                match = re.search(rf"{name}: (\d+)", line)
                if match:
                    totals[name] += int(match.group(1))
    return totals


def failure_reason(output: str) -> str:
    """The first assertion / error line of a failed pytest run, for the report."""
    for pattern in (r"^E\s+(.+)$", r"^(FAILED .+)$", r"^(ERROR .+)$"):
        match = re.search(pattern, output, re.M)
        if match:
            return match.group(1)[:300]
    return (output.strip().splitlines() or ["(no output)"])[-1][:300]


def run_once(node: str, timeout_s: float) -> tuple[bool, float, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--timeout", str(int(timeout_s)), node]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s + 60)
        output, ok = done.stdout + done.stderr, done.returncode == 0
    except subprocess.TimeoutExpired as exc:
        output = f"{exc.stdout or ''}{exc.stderr or ''}\n(killed after {timeout_s + 60:.0f} s)"
        ok = False
    return ok, time.monotonic() - started, output


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--repeat", type=int, default=20, help="runs of each scenario (default 20)")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression selecting scenarios")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one run may take (default 900)")
    parser.add_argument("--stop-on-fail", action="store_true", help="stop at the first failed run")
    parser.add_argument("--log-dir", type=Path, help="where failed runs' output goes (default: a temp folder)")
    args = parser.parse_args(argv)

    scenarios = collect(args.keyword)
    if not scenarios:
        print(f"no scenario collected from {SCENARIO_FILE} (-k {args.keyword!r})", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="fault-repeat-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {
        s: {"runs": 0, "failures": [], "seconds": [], **dict.fromkeys(TALLY_FIELDS, 0)} for s in scenarios
    }
    print(f"{len(scenarios)} scenario(s) x {args.repeat} run(s); failed runs' output under {log_dir}", flush=True)
    stop = False
    for round_no in range(1, args.repeat + 1):  # round-robin: a leftover of one scenario hits the next one
        for node in scenarios:
            ok, seconds, output = run_once(node, args.timeout)
            entry = report[node]
            entry["runs"] += 1
            entry["seconds"].append(round(seconds, 1))
            tally = parse_tally(output)
            for name, value in tally.items():
                entry[name] += value
            dirty = [name for name in MUST_BE_ZERO if tally.get(name)]
            short = node.split("::")[-1]
            if ok and not dirty:
                print(f"[{round_no}/{args.repeat}] PASS {short} ({seconds:.0f} s)", flush=True)
                continue
            log = log_dir / f"{short}-run{round_no}.log"
            log.write_text(output)
            reason = failure_reason(output) if not ok else f"tally not clean: {dirty}"
            entry["failures"].append({"run": round_no, "reason": reason, "log": str(log)})
            print(f"[{round_no}/{args.repeat}] FAIL {short} ({seconds:.0f} s): {reason}\n    log: {log}", flush=True)
            if args.stop_on_fail:
                stop = True
                break
        if stop:
            break

    total_failures = sum(len(e["failures"]) for e in report.values())
    print("\nscenario | runs | failures | median s")
    for node, entry in report.items():
        secs = sorted(entry["seconds"]) or [0.0]
        print(f"{node.split('::')[-1]} | {entry['runs']} | {len(entry['failures'])} | {secs[len(secs) // 2]:.0f}")
        for failure in entry["failures"]:
            print(f"    run {failure['run']}: {failure['reason']}")
    summary = {
        "bench": "fault_repeat",
        "machine": machine_info(),
        "repeat": args.repeat,
        "failures": total_failures,
        "scenarios": {
            node.split("::")[-1]: {k: v for k, v in e.items() if k != "seconds"} for node, e in report.items()
        },
    }
    print(json.dumps(summary, default=str))
    return 0 if total_failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
