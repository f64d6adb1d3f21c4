"""Peak memory of the platform process while one large file is committed through the Hugging Face NDJSON commit route
(issue 11, item 8: uploads are streamed to disk, memory bounded independently of the file size).

    python bench/bench_upload_memory.py                # a 1 GiB file
    python bench/bench_upload_memory.py --mib 129      # smaller

The platform runs as ``python -m embed_ft.platform serve`` (its own process); the file (random bytes, sent chunked,
never held whole by this client either) is committed as one base64 ``content`` string, the way huggingface_hub
sends a regular file. The server's RSS is sampled every 20 ms from /proc; the figures are its baseline after a
small warm-up commit, its peak during the upload, the growth, the upload time, and whether the stored file has the
right size and git blob id. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench.common import machine_info, platform_pid, platform_subprocess, print_json_line, temporary_home  # noqa: E402

BLOCK = 3 * 1024 * 1024  # a multiple of 3: each block base64-encodes on its own
NDJSON = {"Content-Type": "application/x-ndjson"}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def header(summary: str) -> bytes:
    return json.dumps({"key": "header", "value": {"summary": summary}}).encode() + b"\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB (rounded to 3 MiB blocks)")
    args = parser.parse_args(argv)
    blocks = max(1, args.mib * 1024 * 1024 // BLOCK)
    size = blocks * BLOCK
    block = os.urandom(BLOCK)
    encoded = base64.b64encode(block)
    digest = hashlib.sha1(b"blob %d\x00" % size)
    for _ in range(blocks):
        digest.update(block)

    with temporary_home("bench-upload-") as home, platform_subprocess(home) as url:
        pid = platform_pid(home)
        requests.post(f"{url}/v1/datastore/namespaces", data={"namespace": "bench"}, timeout=60).raise_for_status()
        requests.post(
            f"{url}/v1/hf/api/repos/create",
            json={"name": "big", "organization": "bench", "type": "dataset"},
            timeout=60,
        ).raise_for_status()
        commit_url = f"{url}/v1/hf/api/datasets/bench/big/commit/main"
        small = (
            header("warm-up")
            + json.dumps(
                {
                    "key": "file",
                    "value": {
                        "path": "small.txt",
                        "content": base64.b64encode(b"small").decode(),
                        "encoding": "base64",
                    },
                }
            ).encode()
            + b"\n"
        )
        requests.post(commit_url, data=small, headers=NDJSON, timeout=60).raise_for_status()
        baseline = rss_bytes(pid)
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(pid))
                time.sleep(0.02)

        def body():
            yield header("big")
            yield b'{"key": "file", "value": {"path": "big.bin", "encoding": "base64", "content": "'
            for _ in range(blocks):
                yield encoded
            yield b'"}}\n'

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            response = requests.post(commit_url, data=body(), headers=NDJSON, timeout=(10, 3600))
        finally:
            done.set()
            sampler.join(5)
        seconds = time.monotonic() - started
        response.raise_for_status()
        tree = requests.get(f"{url}/v1/hf/api/datasets/bench/big/tree/main", timeout=60).json()
        entry = next(e for e in tree if e["path"] == "big.bin")
        figures = {
            "bench": "upload_memory",
            "machine": machine_info(),
            "file_mib": round(size / 2**20, 1),
            "body_mib": round((len(encoded) * blocks) / 2**20, 1),
            "server_rss_baseline_mib": round(baseline / 2**20, 1),
            "server_rss_peak_mib": round(peak[0] / 2**20, 1),
            "server_rss_growth_mib": round((peak[0] - baseline) / 2**20, 1),
            "upload_s": round(seconds, 1),
            "throughput_mib_s": round(size / 2**20 / seconds, 1),
            "stored_size_ok": entry["size"] == size,
            "stored_oid_ok": entry["oid"] == digest.hexdigest(),
        }
    print_json_line(figures)
    return 0 if figures["stored_size_ok"] and figures["stored_oid_ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
