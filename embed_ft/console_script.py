"""The ``embed-ft`` console script.

``embed-ft platform ...`` goes straight to the platform's click group: serving the local platform needs neither
Dagster nor the asset definitions, whose imports cost about 2.5 s on 2 CPU cores (the server started in 3.8 s
instead of 1.0 s). Every other command is ``embed_ft.cli.main``, which also mounts the platform group, so help,
``--version`` and in-process callers see one command tree.
"""

from __future__ import annotations

import sys
from importlib import import_module

from .platform.cli import platform_group


def main() -> None:
    if sys.argv[1:2] == [platform_group.name]:
        platform_group(args=sys.argv[2:], prog_name=f"embed-ft {platform_group.name}")
    else:
        import_module("embed_ft.cli").main()
