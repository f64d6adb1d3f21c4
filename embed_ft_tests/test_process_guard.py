"""The leaked-process guard (embed_ft_tests/process_guard.py) fails a test that leaves an orphan behind, and the
session when a test leaves a child running; it kills both and names the tests. Run on a small suite of its own in
a child pytest (its own token), so nothing here leaks into this session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from embed_ft_tests.home_probes import child_env

INNER_CONFTEST = """
from embed_ft_tests import process_guard

process_guard.EXIT_GRACE_S = 0.5

def pytest_configure(config):
    process_guard.start_session()

pytest_runtest_teardown = process_guard.pytest_runtest_teardown
pytest_sessionfinish = process_guard.pytest_sessionfinish
pytest_terminal_summary = process_guard.pytest_terminal_summary
"""

INNER_TESTS = """
import multiprocessing, subprocess, sys
from pathlib import Path

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
# Starts a sleeper and exits at once: the sleeper is re-parented to init, as a `dg dev` whose parent was killed.
QUIET = "stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT"  # or the run below waits for the sleeper's output
ORPHANING = "import subprocess, sys; print(subprocess.Popen(%r, %s).pid)" % (SLEEPER, QUIET)

def test_leaves_an_orphan():
    out = subprocess.run([sys.executable, "-c", ORPHANING], capture_output=True, text=True, check=True).stdout
    Path("orphan.pid").write_text(out.strip())

def test_leaves_a_child():
    Path("child.pid").write_text(str(subprocess.Popen(SLEEPER).pid))

def test_stops_what_it_starts():
    subprocess.Popen(SLEEPER).kill()
    multiprocessing.get_context("spawn").Lock()  # starts multiprocessing's resource tracker, which stays: not a leak
"""


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_the_guard_fails_and_names_the_tests_that_leave_processes_and_kills_them(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_leaks.py").write_text(INNER_TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_leaks.py"],
        cwd=tmp_path,
        env=child_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),  # pytest alone: quicker
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout + done.stderr
    orphan, child = (int((tmp_path / name).read_text()) for name in ("orphan.pid", "child.pid"))
    assert done.returncode == 1, out
    assert "test_leaks.py::test_leaves_an_orphan left processes running" in out, out
    assert f"pid {orphan} (parent " in out, out
    assert f"pid {child} (parent " in out, out
    assert "first seen after test_leaks.py::test_leaves_a_child" in out, out
    assert "3 passed, 1 error" in out, out
    assert "resource_tracker" not in out, out
    assert not running(orphan)
    assert not running(child)
