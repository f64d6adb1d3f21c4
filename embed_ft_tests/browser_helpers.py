"""Helpers of the operator-experience tests: a persistent Dagster instance holding real lineage runs, the Dagster
webserver as a child process, and headless Debian Chromium driven by Playwright.

    instance = DagsterInstance.from_config(str(dagster_home))
    materialize_lineage(instance, base_url, tiny_lineage_run_config(source, "file://tinybeir/"), "my-experiment")
    with running_webserver(dagster_home, env=platform_env(base_url)) as ui_url:
        with chromium_page() as page:
            page.goto(f"{ui_url}/asset-groups")

No browser is ever downloaded: Chromium is the distribution's ``/usr/bin/chromium`` (``.ci/install-browser``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import pytest
import requests

CHROMIUM = Path(os.environ.get("EMBED_FT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEBSERVER_STARTUP_TIMEOUT_S = 120.0
WEBSERVER_STOP_TIMEOUT_S = 20.0

LINEAGE_ASSETS = [
    "experiment_spec",
    "preflight",
    "specter_source",
    "specter_raw",
    "mined_triplets",
    "specter_triplets",
    "training_dataset",
    "fine_tuned_model",
    "baseline_nim",
    "fine_tuned_nim",
    "heldout_eval_dataset",
    "baseline_evaluation",
    "fine_tuned_evaluation",
    "evaluation_report",
    "experiment_leaderboard",
]


def free_port() -> int:
    """A port the OS says is free now (the webserver binds it itself, so a tiny race is unavoidable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_dagster_yaml(dagster_home: Path) -> Path:
    """A minimal instance config: no telemetry, nothing that reaches outside the temporary home."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    # nux off: no "join the community" dialog over the pages the browser test reads and screenshots. Runs launched
    # from the UI start at once (no daemon needed to dequeue them).
    path.write_text(
        "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    return path


def materialize_lineage(instance, base_url: str, run_config: dict, experiment: str):
    """Materialize every lineage asset (and the checks) for ``experiment`` into ``instance`` against the platform at
    ``base_url``."""
    from embed_ft.resources import resources_for_url

    from .lineage_fixtures import materialize_experiment

    result = materialize_experiment(instance, resources_for_url(base_url), run_config, experiment, raise_on_error=False)
    if not result.success:
        failures = [
            f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
            for e in result.all_events
            if e.is_step_failure
        ]
        raise AssertionError(f"lineage materialization failed: {failures}")
    return result


def write_beir_subset(source: Path, root: Path, name: str, queries: int = 30, extra_documents: int = 270) -> Path:
    """A small real BEIR set: the first ``queries`` test queries of ``source``, their relevant documents and
    ``extra_documents`` others (distractors), so that retrieval scores are neither trivial nor slow to compute."""
    import json

    qrels = (source / "qrels" / "test.tsv").read_text().splitlines()[1:]
    kept_queries: list[str] = []
    for line in qrels:
        query_id = line.split("\t")[0]
        if query_id not in kept_queries and len(kept_queries) < queries:
            kept_queries.append(query_id)
    kept_qrels = [line for line in qrels if line.split("\t")[0] in kept_queries]
    relevant = {line.split("\t")[1] for line in kept_qrels}
    documents, distractors = [], 0
    with open(source / "corpus.jsonl") as corpus:
        for line in corpus:
            if json.loads(line)["_id"] in relevant:
                documents.append(line)
            elif distractors < extra_documents:
                documents.append(line)
                distractors += 1
    with open(source / "queries.jsonl") as all_queries:
        query_lines = [line for line in all_queries if json.loads(line)["_id"] in kept_queries]
    folder = root / name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(documents))
    (folder / "queries.jsonl").write_text("".join(query_lines))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(kept_qrels) + "\n")
    return folder


def platform_env(base_url: str, dagster_home: Path) -> dict[str, str]:
    """Environment of a child process whose resources all point at ``base_url`` and whose instance is
    ``dagster_home``."""
    from embed_ft.platform.settings import service_urls

    env = dict(os.environ)
    env.update(service_urls(base_url))  # NDS_URL, NEMO_URL and NIM_URL (the NIM routes have their own prefix)
    env.update(DAGSTER_HOME=str(dagster_home), PYTHONUNBUFFERED="1")
    return env


def stop_process_group(proc: subprocess.Popen, timeout_s: float = WEBSERVER_STOP_TIMEOUT_S) -> None:
    """SIGTERM the child's own process group (the webserver spawns a code-server child), then SIGKILL if needed."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass


@contextmanager
def running_webserver(dagster_home: Path, env: dict[str, str], log_path: Optional[Path] = None) -> Iterator[str]:
    """Start ``dagster-webserver -m embed_ft.definitions`` on 127.0.0.1:<free port>; yield its URL; stop it after.

    The child runs in its own session so that stopping it also stops the code server it starts.
    """
    port = free_port()
    log_path = log_path or dagster_home / "webserver.log"
    cmd = [
        sys.executable, "-m", "dagster_webserver",
        "-m", "embed_ft.definitions",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WEBSERVER_STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {proc.returncode}: {tail(log_path)}")
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dagster-webserver did not answer {url}/server_info within {WEBSERVER_STARTUP_TIMEOUT_S:.0f} s: "
                    f"{tail(log_path)}"
                )
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("EMBED_FT_REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
            pytest.fail(f"{CHROMIUM} is missing although EMBED_FT_REQUIRE_BROWSER is set: run .ci/install-browser")
        pytest.skip(f"{CHROMIUM} is missing: run .ci/install-browser")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@contextmanager
def chromium_browser():
    """Headless Debian Chromium through Playwright (never a downloaded browser); closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, width: int = 1600, height: int = 1000, timeout_ms: int = 30_000):
    """A fresh page (own storage) whose every wait is bounded by ``timeout_ms``."""
    context = browser.new_context(viewport={"width": width, "height": height})
    # Belt and braces with `nux: enabled: false`: the UI also remembers a dismissed community dialog here.
    context.add_init_script("window.localStorage.setItem('communityNux', '1')")
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.set_default_navigation_timeout(timeout_ms)
    return page


@contextmanager
def chromium_page(width: int = 1600, height: int = 1000, timeout_ms: int = 30_000):
    """One page of headless Chromium (see ``new_page``)."""
    with chromium_browser() as browser:
        yield new_page(browser, width, height, timeout_ms)
