"""Memory of the platform process over deploy/undeploy cycles (issue 24, F5: memory returned on undeploy).

    python bench/bench_deploy_memory.py                   # 6 rounds of deploy 5 / delete 5
    python bench/bench_deploy_memory.py --rounds 3 --per-round 4

The platform runs as ``python -m embed_ft.platform serve`` (its own process). Each round deploys ``--per-round``
deployments of the bundled all-MiniLM-L6-v2 under their own names (each one's own copy of the weights folder,
linked, so each is a separate model in memory, as different fine-tunes are), waits until all are ready, embeds one
text with each, deletes them all, and reads the server's RSS from /proc. The figures: the RSS after the warm-up
round, after every round, the growth per round after the first (least squares over the rounds), and the RSS while
the deployments were live. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench.common import machine_info, platform_pid, platform_subprocess, print_json_line, temporary_home  # noqa: E402
from embed_ft.platform.services.model_weights import bundled_minilm_path  # noqa: E402

NS = "bench-deploy"
TIMEOUT = (5, 120)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def model_folders(home: Path, count: int) -> list[Path]:
    """``count`` model folders in the home's models folder, each linking the bundled model's files."""
    folders = []
    for index in range(count):
        folder = home / "models" / f"bench-copy-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for item in bundled_minilm_path().iterdir():
            link = folder / item.name
            if not link.exists():
                link.symlink_to(item)
        folders.append(folder)
    return folders


def one_round(url: str, count: int) -> None:
    for index in range(count):
        requests.post(
            f"{url}/v1/deployment/model-deployments",
            json={"name": f"dep-{index}", "namespace": NS, "config": {"model": f"{NS}/copy-{index}@v1"}},
            timeout=TIMEOUT,
        ).raise_for_status()
    deadline = time.monotonic() + 600
    for index in range(count):
        while True:
            doc = requests.get(f"{url}/v1/deployment/model-deployments/{NS}/dep-{index}", timeout=TIMEOUT).json()
            status = doc["status_details"]["status"]
            if status == "ready":
                break
            if status == "failed" or time.monotonic() > deadline:
                raise RuntimeError(f"deployment dep-{index}: {doc['status_details']}")
            time.sleep(0.2)
        requests.post(
            f"{url}/nim/v1/embeddings", json={"model": f"{NS}/copy-{index}", "input": ["a text"]}, timeout=TIMEOUT
        ).raise_for_status()


def delete_all(url: str, count: int) -> None:
    for index in range(count):
        requests.delete(f"{url}/v1/deployment/model-deployments/{NS}/dep-{index}", timeout=TIMEOUT).raise_for_status()


def slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=5)
    args = parser.parse_args(argv)
    with temporary_home("bench-deploy-") as home:
        folders = model_folders(home, args.per_round)
        with platform_subprocess(home) as url:
            pid = platform_pid(home)
            assert pid is not None
            requests.post(f"{url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).raise_for_status()
            for index, folder in enumerate(folders):
                body = {"name": f"copy-{index}@v1", "namespace": NS, "artifact_path": str(folder)}
                requests.post(f"{url}/v1/models", json=body, timeout=TIMEOUT).raise_for_status()
            started_mib = rss_mib(pid)
            after: list[float] = []
            live: list[float] = []
            for _ in range(args.rounds):
                one_round(url, args.per_round)
                live.append(round(rss_mib(pid), 1))
                delete_all(url, args.per_round)
                time.sleep(1.0)  # let the loader threads end
                after.append(round(rss_mib(pid), 1))
    figures = {
        "bench": "deploy_memory",
        "machine": machine_info(),
        "rounds": args.rounds,
        "deployments_per_round": args.per_round,
        "server_rss_start_mib": round(started_mib, 1),
        "server_rss_live_mib": live,
        "server_rss_after_round_mib": after,
        "growth_per_round_after_the_first_mib": round(slope(after[1:]), 2),
        "retained_after_first_round_mib": round(after[0] - started_mib, 1),
    }
    print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
