"""Shared helpers of the bench scripts: machine description, peak RSS, the final JSON line, a throw-away platform.

Every bench prints its figures as ONE JSON line at the end (``print_json_line``); ``machine_info`` goes into it so
that a figure copied into BENCHMARKS.md carries the machine it was measured on.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform as _platform
import resource
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real data lives next to the repository (never copied into it): <repo>/../shared/data
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# EMBED_FT_BENCH_SCIFACT: a copy elsewhere (bench/gpu_check.sh on a machine without ../shared).
SCIFACT_DIR = Path(os.environ.get("EMBED_FT_BENCH_SCIFACT") or SHARED_DATA / "beir" / "scifact")

if str(REPO_ROOT) not in sys.path:  # run as `python bench/x.py` from a source checkout
    sys.path.insert(0, str(REPO_ROOT))


def offline_hub() -> None:
    """No Hugging Face Hub here: the weights are local. Loopback Data Store calls are let through by the client."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, load average, Python/torch versions, CUDA device (if any), the UTC date of the run."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": usable_cores(),
        "cpu_model": cpu_model(),
        "python": _platform.python_version(),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine: the noise behind a timing
        info["load_avg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = bool(torch.cuda.is_available())
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
        info["cuda"] = False
    return info


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident set size of this process (or of its waited-for children), MiB. Linux reports KiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def print_json_line(figures: dict[str, Any]) -> None:
    """The one machine-readable line a bench ends with (sorted keys, no NaN)."""
    print(json.dumps(figures, sort_keys=True, allow_nan=False, default=str), flush=True)


def ratio(numerator: float | None, denominator: float | None, digits: int = 4) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, digits)


@contextmanager
def temporary_home(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh platform home in the system temp folder (removed afterwards unless ``keep``)."""
    if keep:
        yield Path(tempfile.mkdtemp(prefix=prefix))
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


@contextmanager
def platform_subprocess(home: Path, start_timeout_s: float = 180.0) -> Iterator[str]:
    """Start the real local platform (``python -m embed_ft.platform serve``) on 127.0.0.1:<free port> for ``home``;
    yield its base URL; stop it (and its workers) on exit.

    A separate process, as users run it: the bench's client code does not share the server's interpreter (GIL).
    """
    from embed_ft.platform import launcher
    from embed_ft.platform.settings import PlatformSettings

    settings = PlatformSettings(home=home, host="127.0.0.1", port=0, token=None)
    url = launcher.ensure_running(settings, timeout_s=start_timeout_s)
    try:
        yield url
    finally:
        launcher.stop(settings)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def platform_pid(home: Path) -> int | None:
    """The pid of the platform serving ``home`` (from its state file), if one runs."""
    from embed_ft.platform import launcher
    from embed_ft.platform.settings import PlatformSettings

    return launcher.status(PlatformSettings(home=home)).get("pid")


@contextmanager
def platform_thread(home: Path, start_timeout_s: float = 60.0) -> Iterator[str]:
    """The real app on uvicorn in a thread of this process (cheaper to start; shares this interpreter)."""
    import socket
    import threading
    import time

    import uvicorn

    from embed_ft.platform.app import create_app
    from embed_ft.platform.settings import PlatformSettings

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = PlatformSettings(home=home, host="127.0.0.1", port=port, token=None)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bench-platform", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the platform did not start on port {port} within {start_timeout_s:.0f} s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def nemo_clients(base_url: str) -> dict[str, Any]:
    """The project's NeMo clients, all on the one local platform URL."""
    from embed_ft.nemo.customizer import CustomizerClient
    from embed_ft.nemo.datastore import DataStoreClient
    from embed_ft.nemo.deployment import DeploymentClient
    from embed_ft.nemo.entity_store import EntityStoreClient
    from embed_ft.nemo.http import ServiceHTTP
    from embed_ft.nemo.nim import NimClient
    from embed_ft.platform.settings import service_urls

    return {
        "datastore": DataStoreClient(base_url),
        "entities": EntityStoreClient(ServiceHTTP(base_url, "Entity Store")),
        "customizer": CustomizerClient(ServiceHTTP(base_url, "Customizer")),
        "deployment": DeploymentClient(ServiceHTTP(base_url, "Deployment")),
        "nim": NimClient(ServiceHTTP(service_urls(base_url)["NIM_URL"], "NIM")),  # NIM routes live under /nim
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def scifact_doc_text(doc: dict[str, Any]) -> str:
    """A BEIR document as the model sees it (title and body), exactly as the data stage and evaluator join it."""
    from embed_ft.formats.beir import document_text

    return document_text(doc.get("title"), doc.get("text"))
