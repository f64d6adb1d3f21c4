"""Run the fault-injection scenarios (embed_ft_tests/test_reliability_pipeline.py) and print one summary figure.

    python bench/bench_faults.py            # all scenarios (a few minutes on 2 CPU cores)
    python bench/bench_faults.py -k restart # a subset, by pytest -k expression

Each scenario drives real Dagster materializations against the real local platform with injected faults and
prints a tally line; this script sums them: faults injected, runs completed, duplicates, orphans, lost artifacts.
Exit status 0 only if every scenario passed and duplicates, orphans and lost artifacts are all 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("faults injected", "runs completed", "runs failed as expected", "duplicates", "orphans", "lost artifacts")


def main(argv: list[str]) -> int:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(REPO / "embed_ft_tests" / "test_reliability_pipeline.py"),
        *argv,
    ]
    completed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    totals = dict.fromkeys(FIELDS, 0)
    for line in completed.stdout.splitlines():
        if line.startswith("[reliability]"):
            print(line)
            for name in FIELDS:
                match = re.search(rf"{name}: (\d+)", line)
                if match:
                    totals[name] += int(match.group(1))
    print(completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else completed.stderr[-2000:])
    print("TOTAL " + ", ".join(f"{name}: {value}" for name, value in totals.items()))
    clean = totals["duplicates"] == totals["orphans"] == totals["lost artifacts"] == 0
    return 0 if completed.returncode == 0 and clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
