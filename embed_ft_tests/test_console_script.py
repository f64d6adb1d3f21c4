"""The ``embed-ft`` console script: ``embed-ft platform ...`` never imports Dagster; every other command is the
whole CLI."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from embed_ft_tests.home_probes import REPO_ROOT, child_env

# Runs the console script's main with the given arguments and prints which heavy packages got imported.
PROBE = """
import sys
sys.argv = ["embed-ft", *sys.argv[1:]]
from embed_ft.console_script import main
try:
    main()
except SystemExit as stop:
    code = stop.code
print("imported:", sorted(m for m in ("dagster", "embed_ft.definitions", "embed_ft.cli") if m in sys.modules))
print("exit:", code)
"""


def _probe(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_the_installed_script_is_the_console_script():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "embed-ft"]
    assert script.value == "embed_ft.console_script:main"


def test_platform_commands_run_without_dagster():
    out = _probe("platform", "status", "--help")
    assert "Usage: embed-ft platform status [OPTIONS]" in out[0], out
    assert out[-2:] == ["imported: []", "exit: 0"]


def test_every_other_command_is_the_whole_cli():
    out = _probe("--help")
    assert out[0].startswith("Usage: embed-ft [OPTIONS] COMMAND [ARGS]"), out
    assert out[-2:] == ["imported: ['dagster', 'embed_ft.cli', 'embed_ft.definitions']", "exit: 0"]
    assert all(any(line.startswith(f"  {name} ") for line in out) for name in ("run", "ui", "report", "platform")), out
