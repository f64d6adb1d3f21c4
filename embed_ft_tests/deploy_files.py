"""Test helper: deploy/Dockerfile read as data (ENV, USER, EXPOSE, CMD, each variant's install commands), and its
command run outside a container: the same command and environment, only the bind address (loopback), the port
(a free one) and the image's absolute paths (moved under a test's folder) differ.

Used by test_deployment_files.py (the files agree), test_core_install.py (the image's cluster install in a fresh
venv, then its command) and test_deployment_postgres.py (the code server of the single server).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import DagsterInstance
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._grpc.client import DagsterGrpcClient

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
START_TIMEOUT_S = 120.0


def dockerfile() -> dict[str, Any]:
    """ENV, ARG defaults, USER, EXPOSE, COPY sources, CMD (exec form) and `install` (variant -> its commands, each
    split into words, from the `case "$VARIANT"` of the RUN line) of deploy/Dockerfile."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text("utf-8"))
    parsed: dict[str, Any] = {"env": {}, "args": {}, "copy": [], "expose": [], "user": None, "cmd": None}
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        instruction, rest = words[0].upper(), words[1] if len(words) > 1 else ""
        if instruction == "ENV":
            parsed["env"].update(dict(item.split("=", 1) for item in shlex.split(rest)))
        elif instruction == "ARG" and "=" in rest:
            name, _, default = rest.strip().partition("=")
            parsed["args"][name] = default
        elif instruction == "COPY":
            parsed["copy"] += shlex.split(rest)[:-1]
        elif instruction == "USER":
            parsed["user"] = rest.strip()
        elif instruction == "EXPOSE":
            parsed["expose"] += [int(port) for port in rest.split()]
        elif instruction == "CMD":
            parsed["cmd"] = json.loads(rest)
        elif instruction == "RUN" and 'case "$VARIANT"' in rest:
            branches = re.findall(r"(\w+)\)\s*(.*?)\s*;;", rest)
            parsed["install"] = {
                variant: [shlex.split(command) for command in body.split("&&")]
                for variant, body in branches
                if variant != "*"
            }
    return parsed


def image_env(root: Path) -> dict[str, str]:
    """The image's ENV with its absolute paths moved under ``root``."""
    return {k: str(root / v.lstrip("/")) if v.startswith("/") else v for k, v in dockerfile()["env"].items()}


def image_command(bin_dir: Path, port: int) -> list[str]:
    """The image's CMD from ``bin_dir`` (a venv's bin), bound to 127.0.0.1:``port``."""
    cmd = dockerfile()["cmd"]
    cmd = [str(bin_dir / cmd[0]), *cmd[1:]]
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    cmd[cmd.index("-p") + 1] = str(port)
    return cmd


def _healthy(client: DagsterGrpcClient) -> bool:
    try:
        return client.health_check_query() == "SERVING"
    except DagsterUserCodeUnreachableError:  # not listening yet
        return False


@contextmanager
def serving_image_command(bin_dir: Path, port: int, env: Mapping[str, str], cwd: Path) -> Iterator[set[str]]:
    """Run the image's command from ``bin_dir`` until it serves, pass the chart's readiness probe
    (`dagster api grpc-health-check`, as the chart runs it) and yield the names of the jobs it serves; stopped on
    exit."""
    server = subprocess.Popen(
        image_command(bin_dir, port),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(client):
            assert server.poll() is None, server.stdout.read().decode()[-3000:] if server.stdout else ""
            assert time.monotonic() < deadline, f"the code server did not start within {START_TIMEOUT_S:.0f} s"
            time.sleep(0.5)
        probe = [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port)]
        assert subprocess.run(probe, check=False, env=dict(env), capture_output=True, timeout=60).returncode == 0
        origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name="embed_ft")
        with DagsterInstance.ephemeral() as instance, origin.create_location(instance) as location:
            (repository,) = location.get_repositories().values()
            yield {job.name for job in repository.get_all_jobs()}
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
